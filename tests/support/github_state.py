"""In-memory model of what GitHub keeps beside git, for the local GitHub API server.

Pull requests, comments, labels, commit statuses and dispatches live here; branches and
commits do not: they are read from the bare repository on disk every time (see `github_git`).
This module also holds the request/answer types the endpoint handlers share.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from .github_git import BareRepo

if TYPE_CHECKING:
    from .github_render import Renderer

JsonObject = dict[str, Any]


def now() -> str:
    """The current time the way GitHub writes timestamps."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def github_time(iso: str) -> str:
    """Any ISO 8601 time (as git prints it) in GitHub's UTC `Z` form."""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Pull:
    """A pull request; its number is also its issue number."""

    number: int
    id: int
    issue_id: int
    title: str
    body: str | None
    head: str
    base: str
    draft: bool
    author: str
    head_sha: str
    base_sha: str
    created_at: str
    updated_at: str
    state: str = "open"
    closed_at: str | None = None
    merged_at: str | None = None
    merged_by: str | None = None
    merge_commit_sha: str | None = None
    labels: list[str] = field(default_factory=list)
    comment_ids: list[int] = field(default_factory=list)
    reviews: list[Review] = field(default_factory=list)


@dataclass
class Comment:
    """An issue (conversation) comment."""

    id: int
    number: int
    body: str
    author: str
    created_at: str
    updated_at: str


@dataclass
class Review:
    """A pull request review (``APPROVED``, ``CHANGES_REQUESTED``, ``COMMENTED``,
    ``DISMISSED``)."""

    id: int
    number: int
    author: str
    state: str
    body: str
    commit_id: str
    submitted_at: str


@dataclass
class Label:
    """A repository label."""

    id: int
    name: str
    color: str = "ededed"
    description: str | None = None


@dataclass
class Status:
    """A commit status."""

    id: int
    sha: str
    state: str
    target_url: str | None
    description: str | None
    context: str
    creator: str
    created_at: str


@dataclass
class Repo:
    """One repository: its bare git repository plus the objects GitHub keeps beside it."""

    owner: str
    name: str
    id: int
    git: BareRepo
    created_at: str
    next_number: int = 1
    pulls: dict[int, Pull] = field(default_factory=dict)
    comments: dict[int, Comment] = field(default_factory=dict)
    labels: dict[str, Label] = field(default_factory=dict)
    statuses: list[Status] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def take_number(self) -> int:
        """The next pull request / issue number: both share one sequence, as on GitHub."""
        number = self.next_number
        self.next_number += 1
        return number


class Ids:
    """Unique ids for every object a server creates."""

    def __init__(self) -> None:
        self._counter = itertools.count(1001)

    def take(self) -> int:
        return next(self._counter)


DOCS = "https://docs.github.com/rest"
#: GitHub's cap on pull request, issue and comment bodies, in characters.
BODY_LIMIT = 65536
#: GitHub's cap on a commit status description, in characters.
STATUS_DESCRIPTION_LIMIT = 140


class ApiError(Exception):
    """An error answer in GitHub's shape."""

    def __init__(
        self, status: int, message: str, *, errors: list[JsonObject] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors

    def body(self) -> JsonObject:
        data: JsonObject = {"message": self.message, "documentation_url": DOCS}
        if self.errors is not None:
            data["errors"] = self.errors
        data["status"] = str(self.status)
        return data


def validation_failed(*errors: JsonObject) -> ApiError:
    return ApiError(422, "Validation Failed", errors=list(errors))


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


@dataclass(frozen=True)
class Call:
    """One request as the handlers see it: path without the API prefix, no headers."""

    path: str
    query: dict[str, str]
    body: Any
    params: dict[str, str] = field(default_factory=dict)
    #: Who the request's token belongs to.
    login: str = ""

    def get(self, name: str) -> Any:
        """A field of the JSON body, or None."""
        return self.body.get(name) if isinstance(self.body, dict) else None

    def text(self, name: str, resource: str, *, required: bool = False) -> str | None:
        """A string field of the JSON body, validated the way GitHub does."""
        value = self.get(name)
        if value is None and required:
            raise validation_failed({"resource": resource, "code": "missing_field", "field": name})
        if value is not None and not isinstance(value, str):
            raise validation_failed({"resource": resource, "code": "invalid", "field": name})
        return value

    def limited(
        self, name: str, resource: str, limit: int, *, required: bool = False
    ) -> str | None:
        """A string field GitHub caps at `limit` characters: longer answers 422 as GitHub does
        ("body is too long (maximum is 65536 characters)")."""
        value = self.text(name, resource, required=required)
        if value is not None and len(value) > limit:
            message = f"{name} is too long (maximum is {limit} characters)"
            raise validation_failed(
                {"resource": resource, "code": "custom", "field": name, "message": message}
            )
        return value


@dataclass
class Reply:
    """An answer: status, JSON body (None for no body) and extra headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Headers that replace the standard ones (a rate-limited answer's X-RateLimit-*).
    overrides: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Dispatch:
    """A repository_dispatch event the server received."""

    repository: str
    event_type: str
    client_payload: JsonObject


def _number(value: str | None, default: int) -> int:
    """A numeric query parameter; like GitHub, garbage means the default."""
    return int(value) if value is not None and value.isdigit() else default


class GitHubState:
    """Everything one server knows (the caller holds its lock), and helpers for the handlers."""

    def __init__(self, renderer: Renderer, login: str, repositories: Mapping[str, Path]) -> None:
        self.render = renderer
        self.login = login
        self.ids = Ids()
        self.repos: dict[str, Repo] = {}
        self.dispatches: list[Dispatch] = []
        for full_name, git_dir in repositories.items():
            self.add_repository(full_name, git_dir)

    def add_repository(self, full_name: str, git_dir: Path) -> None:
        """Serve "owner/name" from the bare repository at `git_dir`."""
        owner, name = full_name.split("/")
        repo = Repo(owner, name, self.ids.take(), BareRepo(git_dir), now())
        self.repos[full_name.lower()] = repo

    # -- helpers ---------------------------------------------------------------------------

    def repo(self, call: Call) -> Repo:
        """The repository the request names, or 404."""
        repo = self.repos.get(f"{call.params['owner']}/{call.params['repo']}".lower())
        if repo is None:
            raise not_found()
        return repo

    def pull(self, call: Call) -> tuple[Repo, Pull]:
        """The repository and pull request (or issue) the request names, or 404."""
        repo = self.repo(call)
        number = call.params["number"]
        pr = repo.pulls.get(int(number)) if number.isdigit() else None
        if pr is None:
            raise not_found()
        self.refresh(repo, pr)
        return repo, pr

    @staticmethod
    def refresh(repo: Repo, pr: Pull) -> None:
        """An open pull request follows its branches' tips; a closed one stays as it closed.

        Like GitHub, deleting the head branch of an open pull request closes it.
        """
        if pr.state != "open":
            return
        head_sha = repo.git.branch_tip(pr.head)
        if head_sha is None:
            pr.state, pr.closed_at = "closed", now()
            pr.updated_at = pr.closed_at
            return
        pr.head_sha = head_sha
        pr.base_sha = repo.git.branch_tip(pr.base) or pr.base_sha

    def paginate(self, call: Call, items: list[JsonObject]) -> Reply:
        """One page of `items`, with GitHub's `Link` header for the others."""
        per_page = min(max(_number(call.query.get("per_page"), 30), 1), 100)
        page = max(_number(call.query.get("page"), 1), 1)
        last = max(math.ceil(len(items) / per_page), 1)
        links: list[str] = []

        def link(number: int, rel: str) -> None:
            query = {**call.query, "per_page": str(per_page), "page": str(number)}
            links.append(f'<{self.render.api_url}{call.path}?{urlencode(query)}>; rel="{rel}"')

        if page > 1:
            link(min(page - 1, last), "prev")
        if page < last:
            link(page + 1, "next")
            link(last, "last")
        if page > 1:
            link(1, "first")
        headers = {"Link": ", ".join(links)} if links else {}
        return Reply(200, items[(page - 1) * per_page : page * per_page], headers)

    def open_duplicate(self, repo: Repo, head: str, base: str, number: int = 0) -> None:
        """Refuse a second open pull request (other than `number`) for the same head and base."""
        for other in repo.pulls.values():
            same = other.state == "open" and (other.head, other.base) == (head, base)
            if same and other.number != number:
                message = f"A pull request already exists for {repo.owner}:{head}."
                raise validation_failed(
                    {"resource": "PullRequest", "code": "custom", "message": message}
                )

    def branch(self, repo: Repo, branch: str, field_name: str) -> str:
        """The tip of a branch a pull request names, or 422 on `field_name`."""
        sha = repo.git.branch_tip(branch)
        if sha is None:
            raise validation_failed(
                {"resource": "PullRequest", "field": field_name, "code": "invalid"}
            )
        return sha

    def commit_sha(self, repo: Repo, ref: str, status: int) -> str:
        """The commit `ref` names, or `status` with GitHub's "No commit found" message."""
        sha = repo.git.resolve(ref)
        if sha is None:
            raise ApiError(status, f"No commit found for SHA: {ref}")
        return sha

    def labels(self, repo: Repo, names: list[str]) -> list[JsonObject]:
        """The JSON of the named repository labels."""
        return [self.render.label(repo, repo.labels[name.lower()]) for name in names]
