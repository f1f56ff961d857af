"""REST semantics of the local GitHub API server: one handler per endpoint Sluice calls.

Handlers validate like GitHub (422 "Validation Failed" with an `errors` list, including GitHub's
length caps on bodies and status descriptions; 404 "Not Found"; 405 for a pull request that
cannot be merged, including "Base branch was modified" when the base moved under a merge; 409
only when the merge's `sha` is no longer the head) and read branches and commits from the real
bare repository every time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from .github_git import GITHUB_COMMITTER, Identity
from .github_state import (
    BODY_LIMIT,
    STATUS_DESCRIPTION_LIMIT,
    ApiError,
    Call,
    Comment,
    Dispatch,
    GitHubState,
    Label,
    Pull,
    Reply,
    Repo,
    Review,
    Status,
    not_found,
    now,
    validation_failed,
)

STATUS_STATES = ("error", "failure", "pending", "success")

Handler = Callable[[GitHubState, Call], Reply]
_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, template: str) -> Callable[[Handler], Handler]:
    """Register a handler for `method` on `template` ({name} matches one path segment)."""
    pattern = re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template))

    def register(handler: Handler) -> Handler:
        _ROUTES.append((method, pattern, handler))
        return handler

    return register


def dispatch(
    state: GitHubState,
    method: str,
    path: str,
    query: dict[str, str],
    body: Any,
    login: str = "",
) -> Reply:
    """Answer one request (path without the API prefix), made by ``login`` (the server's own
    user when empty), with the handler registered for it."""
    for route_method, pattern, handler in _ROUTES:
        match = pattern.fullmatch(path)
        if match and route_method == method:
            params = {key: unquote(value) for key, value in match.groupdict().items()}
            return handler(state, Call(path, query, body, params, login or state.login))
    raise not_found()


# -- repositories ----------------------------------------------------------------------------


@route("GET", "/repos/{owner}/{repo}")
def get_repo(state: GitHubState, call: Call) -> Reply:
    return Reply(200, state.render.repo(state.repo(call)))


@route("POST", "/repos/{owner}/{repo}/dispatches")
def create_dispatch(state: GitHubState, call: Call) -> Reply:
    repo = state.repo(call)
    event_type = call.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise ApiError(422, 'Invalid request.\n\n"event_type" wasn\'t supplied.')
    payload = call.get("client_payload") or {}
    if not isinstance(payload, dict):
        raise ApiError(
            422, "Invalid request.\n\nFor 'properties/client_payload', is not an object."
        )
    if len(payload) > 10:  # GitHub's limit on client_payload
        supplied = f"No more than 10 properties are allowed; {len(payload)} were supplied."
        raise ApiError(422, f"Invalid request.\n\n{supplied}")
    state.dispatches.append(Dispatch(repo.full_name, event_type, payload))
    return Reply(204)


# -- pull requests -----------------------------------------------------------------------------


@route("GET", "/repos/{owner}/{repo}/pulls")
def list_pulls(state: GitHubState, call: Call) -> Reply:
    repo = state.repo(call)
    wanted = call.query.get("state", "open")
    if wanted not in ("open", "closed", "all"):
        raise validation_failed({"resource": "PullRequest", "field": "state", "code": "invalid"})
    pulls = [pr for pr in repo.pulls.values() if wanted in ("all", pr.state)]
    head = call.query.get("head", "")
    if ":" in head:  # like GitHub, a head filter without "owner:" is silently ignored
        owner, branch = head.split(":", 1)
        pulls = [pr for pr in pulls if owner.lower() == repo.owner.lower() and pr.head == branch]
    if "base" in call.query:
        pulls = [pr for pr in pulls if pr.base == call.query["base"]]
    sort = call.query.get("sort", "created")
    descending = call.query.get("direction", "desc" if sort == "created" else "asc") == "desc"
    if sort == "updated":
        pulls.sort(key=lambda pr: (pr.updated_at, pr.number), reverse=descending)
    else:
        pulls.sort(key=lambda pr: pr.number, reverse=descending)
    for pr in pulls:
        state.refresh(repo, pr)
    return state.paginate(call, [state.render.pull(repo, pr, full=False) for pr in pulls])


@route("POST", "/repos/{owner}/{repo}/pulls")
def create_pull(state: GitHubState, call: Call) -> Reply:
    repo = state.repo(call)
    title = call.text("title", "PullRequest", required=True) or ""
    head = call.text("head", "PullRequest", required=True) or ""
    base = call.text("base", "PullRequest", required=True) or ""
    if ":" in head:
        owner, head = head.split(":", 1)
        if owner.lower() != repo.owner.lower():  # no forks behind this server
            raise validation_failed({"resource": "PullRequest", "field": "head", "code": "invalid"})
    head_sha = state.branch(repo, head, "head")
    base_sha = state.branch(repo, base, "base")
    state.open_duplicate(repo, head, base)
    if repo.git.is_ancestor(head_sha, base_sha):
        message = f"No commits between {base} and {head}"
        raise validation_failed({"resource": "PullRequest", "code": "custom", "message": message})
    created = now()
    pr = Pull(
        number=repo.take_number(),
        id=state.ids.take(),
        issue_id=state.ids.take(),
        title=title,
        body=call.limited("body", "PullRequest", BODY_LIMIT),
        head=head,
        base=base,
        draft=call.get("draft") is True,
        author=state.login,
        head_sha=head_sha,
        base_sha=base_sha,
        created_at=created,
        updated_at=created,
    )
    repo.pulls[pr.number] = pr
    data = state.render.pull(repo, pr, full=True)
    return Reply(201, data, {"Location": data["url"]})


@route("GET", "/repos/{owner}/{repo}/pulls/{number}")
def get_pull(state: GitHubState, call: Call) -> Reply:
    repo, pr = state.pull(call)
    return Reply(200, state.render.pull(repo, pr, full=True))


@route("PATCH", "/repos/{owner}/{repo}/pulls/{number}")
def edit_pull(state: GitHubState, call: Call) -> Reply:
    repo, pr = state.pull(call)
    title = call.text("title", "PullRequest")
    body = call.limited("body", "PullRequest", BODY_LIMIT)
    new_state = call.text("state", "PullRequest") or pr.state
    base = call.text("base", "PullRequest") or pr.base
    if new_state not in ("open", "closed"):
        raise validation_failed({"resource": "PullRequest", "field": "state", "code": "invalid"})
    if pr.merged_at is not None and (new_state, base) != (pr.state, pr.base):
        message = "state cannot be changed. The pull request has already been merged."
        raise validation_failed({"resource": "PullRequest", "code": "custom", "message": message})
    base_sha = state.branch(repo, base, "base") if base != pr.base else pr.base_sha
    if new_state == "open" and pr.state == "closed":  # reopening needs the branches back
        pr.head_sha = state.branch(repo, pr.head, "head")
        base_sha = state.branch(repo, base, "base")
    if new_state == "open":
        state.open_duplicate(repo, pr.head, base, pr.number)
    if new_state != pr.state:
        pr.closed_at = now() if new_state == "closed" else None
    pr.state, pr.base, pr.base_sha = new_state, base, base_sha
    pr.title = pr.title if title is None else title
    if isinstance(call.body, dict) and "body" in call.body:
        pr.body = body
    pr.updated_at = now()
    return Reply(200, state.render.pull(repo, pr, full=True))


@route("GET", "/repos/{owner}/{repo}/pulls/{number}/merge")
def is_merged(state: GitHubState, call: Call) -> Reply:
    _repo, pr = state.pull(call)
    if pr.merged_at is None:
        raise not_found()
    return Reply(204)


@route("PUT", "/repos/{owner}/{repo}/pulls/{number}/merge")
def merge_pull(state: GitHubState, call: Call) -> Reply:
    repo, pr = state.pull(call)
    method = call.get("merge_method") or "merge"
    if method not in ("merge", "squash", "rebase"):
        raise validation_failed(
            {"resource": "PullRequest", "field": "merge_method", "code": "invalid"}
        )
    if method == "rebase":
        raise ApiError(405, "Rebase merges are not allowed on this repository.")
    if pr.state != "open":
        raise ApiError(405, "Pull Request is not mergeable")
    if pr.draft:
        raise ApiError(405, "Pull Request is still a draft")
    expected = call.get("sha")
    if expected is not None and expected != pr.head_sha:
        raise ApiError(409, "Head branch was modified. Review and try the merge again.")
    tree = repo.git.merge_tree(pr.base_sha, pr.head_sha)
    if tree is None:
        raise ApiError(405, "Pull Request is not mergeable")
    title = call.text("commit_title", "PullRequest")
    message = call.text("commit_message", "PullRequest")
    if method == "merge":
        title = title or f"Merge pull request #{pr.number} from {repo.owner}/{pr.head}"
        message = pr.title if message is None else message
        parents = [pr.base_sha, pr.head_sha]
    else:
        title = title or f"{pr.title} (#{pr.number})"
        subjects = repo.git.subjects(pr.base_sha, pr.head_sha)
        message = (
            "\n\n".join(f"* {subject}" for subject in subjects) if message is None else message
        )
        parents = [pr.base_sha]
    user = state.render.user(state.login)
    author = Identity(state.login, f"{user['id']}+{state.login}@users.noreply.github.com")
    full_message = f"{title}\n\n{message}" if message else title
    sha = repo.git.commit_tree(tree, parents, full_message, author, GITHUB_COMMITTER)
    if not repo.git.move_branch(pr.base, sha, pr.base_sha, f"merge pull request #{pr.number}"):
        # GitHub's merge endpoint: 405 when it cannot merge (this included), 409 only for `sha`.
        raise ApiError(405, "Base branch was modified. Review and try the merge again.")
    pr.state = "closed"
    pr.merged_at = pr.closed_at = pr.updated_at = now()
    pr.merged_by = state.login
    pr.merge_commit_sha = sha
    return Reply(200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"})


# -- reviews -------------------------------------------------------------------------------------

REVIEW_EVENTS = {
    "APPROVE": "APPROVED",
    "REQUEST_CHANGES": "CHANGES_REQUESTED",
    "COMMENT": "COMMENTED",
}


def _unprocessable(message: str) -> ApiError:
    return ApiError(422, "Unprocessable Entity", errors=[{"message": message}])


@route("GET", "/repos/{owner}/{repo}/pulls/{number}/reviews")
def list_reviews(state: GitHubState, call: Call) -> Reply:
    repo, pr = state.pull(call)
    return state.paginate(call, [state.render.review(repo, review) for review in pr.reviews])


@route("POST", "/repos/{owner}/{repo}/pulls/{number}/reviews")
def create_review(state: GitHubState, call: Call) -> Reply:
    """A submitted review (an event given; a pending one is not modelled). Like GitHub: the
    author cannot approve or request changes on their own pull request, a closed one takes no
    approval, and a review asking for changes or commenting needs a body."""
    repo, pr = state.pull(call)
    event = call.text("event", "PullRequestReview", required=True) or ""
    if event not in REVIEW_EVENTS:
        raise validation_failed(
            {"resource": "PullRequestReview", "field": "event", "code": "invalid"}
        )
    body = call.limited("body", "PullRequestReview", BODY_LIMIT) or ""
    if event in ("REQUEST_CHANGES", "COMMENT") and not body:
        raise _unprocessable(f"Review Can not {event.lower().replace('_', ' ')} without a body")
    if event != "COMMENT" and call.login == pr.author:
        what = "approve" if event == "APPROVE" else "request changes on"
        raise _unprocessable(f"Can not {what} your own pull request")
    if event == "APPROVE" and pr.state != "open":
        raise _unprocessable("Can not approve a closed pull request")
    commit_id = call.text("commit_id", "PullRequestReview") or pr.head_sha
    if repo.git.resolve(commit_id) is None:
        raise ApiError(422, f"No commit found for SHA: {commit_id}")
    review = Review(
        state.ids.take(), pr.number, call.login, REVIEW_EVENTS[event], body, commit_id, now()
    )
    pr.reviews.append(review)
    pr.updated_at = review.submitted_at
    return Reply(200, state.render.review(repo, review))


@route("PUT", "/repos/{owner}/{repo}/pulls/{number}/reviews/{review_id}/dismissals")
def dismiss_review(state: GitHubState, call: Call) -> Reply:
    repo, pr = state.pull(call)
    call.text("message", "PullRequestReview", required=True)
    review_id = call.params["review_id"]
    review = next((r for r in pr.reviews if str(r.id) == review_id), None)
    if review is None:
        raise not_found()
    if review.state not in ("APPROVED", "CHANGES_REQUESTED"):
        raise _unprocessable("Can not dismiss a commented review")
    review.state = "DISMISSED"
    return Reply(200, state.render.review(repo, review))


# -- issues: comments and labels ---------------------------------------------------------------


@route("GET", "/repos/{owner}/{repo}/issues/{number}")
def get_issue(state: GitHubState, call: Call) -> Reply:
    repo, pr = state.pull(call)
    return Reply(200, state.render.issue(repo, pr))


@route("GET", "/repos/{owner}/{repo}/issues/{number}/comments")
def list_comments(state: GitHubState, call: Call) -> Reply:
    repo, pr = state.pull(call)
    comments = [state.render.comment(repo, repo.comments[cid]) for cid in pr.comment_ids]
    return state.paginate(call, comments)


@route("POST", "/repos/{owner}/{repo}/issues/{number}/comments")
def create_comment(state: GitHubState, call: Call) -> Reply:
    repo, pr = state.pull(call)
    body = call.limited("body", "IssueComment", BODY_LIMIT, required=True) or ""
    created = now()
    comment = Comment(state.ids.take(), pr.number, body, state.login, created, created)
    repo.comments[comment.id] = comment
    pr.comment_ids.append(comment.id)
    pr.updated_at = created
    data = state.render.comment(repo, comment)
    return Reply(201, data, {"Location": data["url"]})


@route("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}")
def edit_comment(state: GitHubState, call: Call) -> Reply:
    repo = state.repo(call)
    comment_id = call.params["comment_id"]
    comment = repo.comments.get(int(comment_id)) if comment_id.isdigit() else None
    if comment is None:
        raise not_found()
    comment.body = call.limited("body", "IssueComment", BODY_LIMIT, required=True) or ""
    comment.updated_at = now()
    return Reply(200, state.render.comment(repo, comment))


@route("GET", "/repos/{owner}/{repo}/issues/{number}/labels")
def list_labels(state: GitHubState, call: Call) -> Reply:
    repo, pr = state.pull(call)
    return state.paginate(call, state.labels(repo, pr.labels))


def _label_names(call: Call) -> list[str]:
    names = call.body.get("labels") if isinstance(call.body, dict) else call.body
    if not isinstance(names, list) or not all(isinstance(name, str) and name for name in names):
        raise validation_failed({"resource": "Label", "field": "name", "code": "invalid"})
    return names


@route("POST", "/repos/{owner}/{repo}/issues/{number}/labels")
def add_labels(state: GitHubState, call: Call) -> Reply:
    repo, pr = state.pull(call)
    for name in _label_names(call):
        label = repo.labels.setdefault(name.lower(), Label(state.ids.take(), name))
        if label.name.lower() not in (existing.lower() for existing in pr.labels):
            pr.labels.append(label.name)
    pr.updated_at = now()
    return Reply(200, state.labels(repo, pr.labels))


@route("PUT", "/repos/{owner}/{repo}/issues/{number}/labels")
def set_labels(state: GitHubState, call: Call) -> Reply:
    _repo, pr = state.pull(call)
    names = _label_names(call)
    pr.labels.clear()
    return add_labels(state, Call(call.path, call.query, names, call.params, call.login))


@route("DELETE", "/repos/{owner}/{repo}/issues/{number}/labels/{name}")
def remove_label(state: GitHubState, call: Call) -> Reply:
    repo, pr = state.pull(call)
    remaining = [name for name in pr.labels if name.lower() != call.params["name"].lower()]
    if len(remaining) == len(pr.labels):
        raise ApiError(404, "Label does not exist")
    pr.labels[:] = remaining
    pr.updated_at = now()
    return Reply(200, state.labels(repo, pr.labels))


# -- commits and statuses ----------------------------------------------------------------------


@route("POST", "/repos/{owner}/{repo}/statuses/{sha}")
def create_status(state: GitHubState, call: Call) -> Reply:
    repo = state.repo(call)
    sha = state.commit_sha(repo, call.params["sha"], 422)
    status_state = call.text("state", "Status", required=True)
    if status_state not in STATUS_STATES:
        message = "state is not included in the list"
        raise validation_failed(
            {"resource": "Status", "field": "state", "code": "custom", "message": message}
        )
    status = Status(
        id=state.ids.take(),
        sha=sha,
        state=status_state,
        target_url=call.text("target_url", "Status"),
        description=call.limited("description", "Status", STATUS_DESCRIPTION_LIMIT),
        context=call.text("context", "Status") or "default",
        creator=state.login,
        created_at=now(),
    )
    repo.statuses.append(status)
    return Reply(201, state.render.status(repo, status))


def _statuses_newest_first(state: GitHubState, call: Call) -> tuple[Repo, str, list[Status]]:
    repo = state.repo(call)
    sha = state.commit_sha(repo, call.params["ref"], 404)
    return repo, sha, [status for status in reversed(repo.statuses) if status.sha == sha]


@route("GET", "/repos/{owner}/{repo}/commits/{ref}/statuses")
@route("GET", "/repos/{owner}/{repo}/statuses/{ref}")  # the legacy path PyGithub's Commit uses
def list_statuses(state: GitHubState, call: Call) -> Reply:
    repo, _sha, statuses = _statuses_newest_first(state, call)
    return state.paginate(call, [state.render.status(repo, status) for status in statuses])


@route("GET", "/repos/{owner}/{repo}/commits/{ref}/status")
def combined_status(state: GitHubState, call: Call) -> Reply:
    repo, sha, statuses = _statuses_newest_first(state, call)
    latest: dict[str, Status] = {}
    for status in statuses:
        latest.setdefault(status.context, status)
    return Reply(200, state.render.combined_status(repo, sha, list(latest.values())))


@route("GET", "/repos/{owner}/{repo}/commits/{ref}")
def get_commit(state: GitHubState, call: Call) -> Reply:
    repo = state.repo(call)
    sha = state.commit_sha(repo, call.params["ref"], 422)
    return Reply(200, state.render.commit(repo, sha))
