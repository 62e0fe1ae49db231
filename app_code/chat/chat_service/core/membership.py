"""Who is in which project on this instance, kept once: both questions ("members of project",
"projects of member") are answered by `Membership`, and only its methods change it."""

from __future__ import annotations

from chat_service.core.member import Member
from chat_service.core.project import ProjectState


class Membership:
    """Projects with members here (each with its state) and, for each member, its projects."""

    __slots__ = ("_joined", "projects")

    def __init__(self) -> None:
        self.projects: dict[str, ProjectState] = {}
        # A tuple per member: most join a handful of projects, and an empty set alone is 216 bytes.
        self._joined: dict[Member, tuple[str, ...]] = {}

    def of(self, member: Member) -> tuple[str, ...]:
        """The projects `member` has joined."""
        return self._joined.get(member, ())

    def has(self, member: Member, project: str) -> bool:
        return project in self._joined.get(member, ())

    def add(self, member: Member, project: str, now_ms: int) -> tuple[ProjectState, bool]:
        """`member` joins `project`: its state, and whether the project is new here."""
        state = self.projects.get(project)
        created = state is None
        if state is None:
            state = self.projects[project] = ProjectState(now_ms)
        if member not in state.members:
            state.members += (member,)
        joined = self._joined.get(member, ())
        if project not in joined:
            self._joined[member] = (*joined, project)
        return state, created

    def remove(self, member: Member, project: str) -> bool:
        """`member` leaves `project`; True when that was its last member here (its state is gone)."""
        joined = self._joined.get(member)
        if joined is not None:
            rest = tuple(p for p in joined if p != project)
            if rest:
                self._joined[member] = rest
            else:
                del self._joined[member]
        state = self.projects.get(project)
        if state is None:
            return False
        state.members = tuple(m for m in state.members if m is not member)
        if state.members:
            return False
        del self.projects[project]
        return True

    def remove_all(self, member: Member) -> list[str]:
        """`member` leaves every project; the projects that lost their last member."""
        return [p for p in self.of(member) if self.remove(member, p)]
