"""MFA Portal entrypoint: the sign-in gate (password, then second factor) and the home page."""

import portal
from portal import home

user = portal.require_user("Home", home=True)
home.render(user)
