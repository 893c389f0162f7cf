"""Add TOTP: the step machine add → verify → backupcodes → success."""

import portal
from portal import enrollment

user = portal.require_user("Add TOTP")
enrollment.render(user)
