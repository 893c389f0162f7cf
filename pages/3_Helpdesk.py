"""Helpdesk (admins only): users' MFA status, one user's audit trail, reset MFA, clear a lockout."""

import portal
from portal import helpdesk

admin = portal.require_admin("Helpdesk", wide=True)
helpdesk.render(admin)
