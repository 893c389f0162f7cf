"""What the verification API promises its callers in numbers: its paths, body cap, strategies, refusal floor.

Shared by ``mfa_services.api``, which keeps to them, and ``mfa_services.openapi``,
which describes them: neither imports the other for them.
"""

from __future__ import annotations

PREFIX = "/api/v1"
MAX_BODY = 4096
STRATEGIES = ("totp", "backup_code")

# Every answer but an accepted code ("ok": false, 429) leaves no sooner than this after the
# request arrived. A wrong code for an enrolled user costs the engine more than a name with no
# second factor (a secret decrypted, codes computed, a larger record rewritten: 1.1-1.8x as long
# here), and a caller must not learn from the time which names are enrolled. The wait is an
# asyncio sleep (no thread held); an accepted code is never held back.
REFUSAL_FLOOR = 0.1
