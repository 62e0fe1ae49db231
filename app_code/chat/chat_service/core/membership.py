"""Who is in which project on this instance, kept once: both questions ("members of project",
"projects of member") are answered by `Membership`, and only its methods change it."""

from __future__ import annotations

from chat_service.core.member import Member
from chat_service.core.project import ProjectState


class Membership:
    """Projects with members here (each with its state) and, for each member, its projects."""

    __slots__ = ("by_member", "projects")

    def __init__(self) -> None:
        # Both indexes are read directly on the hot path (a send checks its sender's projects, a
        # fan-out iterates a project's members); only the methods below change them.
        # Project -> its state here, with its members.
        self.projects: dict[str, ProjectState] = {}
        # Member -> its projects: a tuple, since most join a handful of projects, and an empty set
        # alone is 216 bytes.
        self.by_member: dict[Member, tuple[str, ...]] = {}

    def of(self, member: Member) -> tuple[str, ...]:
        """The projects `member` has joined."""
        return self.by_member.get(member, ())

    def has(self, member: Member, project: str) -> bool:
        return project in self.by_member.get(member, ())

    def add(self, member: Member, project: str, now_ms: int) -> tuple[ProjectState, bool]:
        """`member` joins `project`: its state, and whether the project is new here."""
        state = self.projects.get(project)
        created = state is None
        if state is None:
            state = self.projects[project] = ProjectState(now_ms)
        if member not in state.members:
            state.members += (member,)
        joined = self.by_member.get(member, ())
        if project not in joined:
            self.by_member[member] = (*joined, project)
        return state, created

    def remove(self, member: Member, project: str) -> bool:
        """`member` leaves `project`; True when that was its last member here (its state is gone)."""
        joined = self.by_member.get(member)
        if joined is not None:
            rest = tuple(p for p in joined if p != project)
            if rest:
                self.by_member[member] = rest
            else:
                del self.by_member[member]
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
