"""Manage MFA: the user's authenticator and backup codes, behind reverification."""

import portal
from portal import manage

user = portal.require_user("Manage MFA")
manage.render(user)
