"""Installation state and the control plane.

PHIGATE_HOME, the secret key and the pseudonym vault (``home``, ``vault``); the database of
jobs and records, users, roles and the authorisation function, the audit chain, the policy
library and sites (see each module's docstring).
"""
