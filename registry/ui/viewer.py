"""Who is looking, and what they may see and do: the one question every page and every
handler of the UI asks.

The UI's routes are public in the access table (registry/auth/access.py): a browser
carries a session cookie, not the API's credentials. So the UI checks the registry's
policy itself, here, for every repository it lists and every action it offers or
performs -- the same ``Policy`` the token service and basic mode evaluate, for the user
the session names (with their groups as they are now) or for an anonymous visitor. It
never grants more than the API would: with auth on, a repository is shown only to who
may pull it and a delete offered or done only for who holds ``delete`` on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.auth.access import DELETE, PULL, REPOSITORY_ACTIONS, Identity, Policy


@dataclass(frozen=True)
class Viewer:
    identity: Identity | None  # None: anonymous
    policy: Policy | None  # None: auth is off, everything is open as in the API
    deletes_enabled: bool  # storage.delete.enabled
    readonly: bool  # read-only maintenance mode is on

    @property
    def user(self) -> str | None:
        return self.identity.name if self.identity is not None else None

    def actions(self, name: str) -> frozenset[str]:
        """The actions on repository ``name`` that the UI shows and performs for this
        viewer: what the policy grants, less what the registry refuses to everyone."""
        if self.policy is None:
            held = REPOSITORY_ACTIONS
        else:
            held = self.policy.repository_actions(self.identity, name)
        if not self.deletes_enabled or self.readonly:
            held = held - {DELETE}
        return held

    def may_pull(self, name: str) -> bool:
        if self.policy is None:
            return True  # asked for every repository of a listing: skip the sets
        return PULL in self.policy.repository_actions(self.identity, name)

    def may_delete(self, name: str) -> bool:
        return DELETE in self.actions(name)

    def pull_prefixes(self) -> tuple[str, ...]:
        """Literal prefixes of every repository this viewer may pull (("",): any), so
        that listing the catalog reads no others."""
        if self.policy is None:
            return ("",)
        return self.policy.pull_prefixes(self.identity)

    def sees_everything(self, names: list[str]) -> bool:
        """Whether every one of ``names`` is visible: then registry-wide figures (total
        bytes, bytes shared between repositories) tell nothing about hidden ones."""
        return all(self.may_pull(n) for n in names)
