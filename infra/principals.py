"""Turn a client's `principal` from the deployment description into an IAM principal.

>>> client_principal("account")                                  # the deploying account
>>> client_principal("123456789012")                             # another account
>>> client_principal("arn:aws:iam::123456789012:role/agent")     # one role (or user)
"""

from __future__ import annotations

import re
from typing import Final

from aws_cdk import aws_iam as iam

THIS_ACCOUNT: Final = "account"
_ACCOUNT_ID: Final = re.compile(r"^\d{12}$")
_ACCOUNT_ROOT: Final = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):root$")


def client_principal(principal: str) -> iam.IPrincipal:
    """The IAM principal a client's reply queue and the request topic are shared with."""
    if principal == THIS_ACCOUNT:
        return iam.AccountRootPrincipal()
    if _ACCOUNT_ID.match(principal):
        return iam.AccountPrincipal(principal)
    if match := _ACCOUNT_ROOT.match(principal):
        return iam.AccountPrincipal(match[1])
    return iam.ArnPrincipal(principal)
