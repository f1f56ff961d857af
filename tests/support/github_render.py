"""GitHub's JSON shapes for the local GitHub API server's objects.

The shapes follow GitHub's REST API closely enough that PyGithub parses them without completing
objects from URLs this server does not serve, and every `url` points back at this server (with
its /api/v3 prefix), since PyGithub follows `url` fields to complete lazy objects.
"""

from __future__ import annotations

from urllib.parse import quote

from .github_state import Comment, JsonObject, Label, Pull, Repo, Review, Status, github_time, now


class Renderer:
    """Builds GitHub's JSON shapes with URLs that point back at this server."""

    def __init__(self, api_url: str, web_url: str) -> None:
        self.api_url = api_url
        self.web_url = web_url

    def user(self, login: str, *, kind: str = "User") -> JsonObject:
        user_id = sum(ord(char) for char in login) + 100
        return {
            "login": login,
            "id": user_id,
            "node_id": f"U_{user_id}",
            "avatar_url": f"{self.web_url}/avatars/{login}",
            "gravatar_id": "",
            "url": f"{self.api_url}/users/{login}",
            "html_url": f"{self.web_url}/{login}",
            "type": kind,
            "site_admin": False,
        }

    def repo(self, repo: Repo) -> JsonObject:
        api = f"{self.api_url}/repos/{repo.full_name}"
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": repo.name,
            "full_name": repo.full_name,
            "private": True,
            "visibility": "private",
            "owner": self.user(repo.owner, kind="Organization"),
            "html_url": f"{self.web_url}/{repo.full_name}",
            "description": None,
            "fork": False,
            "url": api,
            "pulls_url": f"{api}/pulls{{/number}}",
            "issues_url": f"{api}/issues{{/number}}",
            "statuses_url": f"{api}/statuses/{{sha}}",
            "clone_url": f"{self.web_url}/{repo.full_name}.git",
            "default_branch": repo.git.default_branch(),
            "archived": False,
            "disabled": False,
            "created_at": repo.created_at,
            "updated_at": repo.created_at,
            "pushed_at": now(),
            "permissions": {"admin": False, "maintain": False, "push": True, "triage": True},
            "allow_merge_commit": True,
            "allow_squash_merge": True,
            "allow_rebase_merge": False,
        }

    def label(self, repo: Repo, label: Label) -> JsonObject:
        return {
            "id": label.id,
            "node_id": f"LA_{label.id}",
            "url": f"{self.api_url}/repos/{repo.full_name}/labels/{quote(label.name)}",
            "name": label.name,
            "color": label.color,
            "default": False,
            "description": label.description,
        }

    def _part(self, repo: Repo, branch: str, sha: str) -> JsonObject:
        return {
            "label": f"{repo.owner}:{branch}",
            "ref": branch,
            "sha": sha,
            "user": self.user(repo.owner, kind="Organization"),
            "repo": self.repo(repo),
        }

    def pull(self, repo: Repo, pr: Pull, *, full: bool) -> JsonObject:
        """A pull request; `full` adds the fields GitHub only returns for a single pull."""
        api = f"{self.api_url}/repos/{repo.full_name}"
        html = f"{self.web_url}/{repo.full_name}/pull/{pr.number}"
        data: JsonObject = {
            "url": f"{api}/pulls/{pr.number}",
            "id": pr.id,
            "node_id": f"PR_{pr.id}",
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": f"{api}/issues/{pr.number}",
            "commits_url": f"{api}/pulls/{pr.number}/commits",
            "review_comments_url": f"{api}/pulls/{pr.number}/comments",
            "review_comment_url": f"{api}/pulls/comments{{/number}}",
            "comments_url": f"{api}/issues/{pr.number}/comments",
            "statuses_url": f"{api}/statuses/{pr.head_sha}",
            "number": pr.number,
            "state": pr.state,
            "locked": False,
            "title": pr.title,
            "user": self.user(pr.author),
            "body": pr.body,
            "labels": [self.label(repo, repo.labels[name.lower()]) for name in pr.labels],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": pr.created_at,
            "updated_at": pr.updated_at,
            "closed_at": pr.closed_at,
            "merged_at": pr.merged_at,
            "merge_commit_sha": pr.merge_commit_sha,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": self._part(repo, pr.head, pr.head_sha),
            "base": self._part(repo, pr.base, pr.base_sha),
            "_links": {
                "self": {"href": f"{api}/pulls/{pr.number}"},
                "html": {"href": html},
                "issue": {"href": f"{api}/issues/{pr.number}"},
                "comments": {"href": f"{api}/issues/{pr.number}/comments"},
                "statuses": {"href": f"{api}/statuses/{pr.head_sha}"},
            },
            "author_association": "MEMBER",
            "auto_merge": None,
            "draft": pr.draft,
        }
        if full:
            data.update(self._pull_details(repo, pr))
        return data

    def _pull_details(self, repo: Repo, pr: Pull) -> JsonObject:
        mergeable: bool | None = None
        mergeable_state = "unknown"
        if pr.state == "open":
            mergeable = repo.git.merge_tree(pr.base_sha, pr.head_sha) is not None
            mergeable_state = ("draft" if pr.draft else "clean") if mergeable else "dirty"
        additions, deletions, files = repo.git.diff_stats(pr.base_sha, pr.head_sha)
        return {
            "merged": pr.merged_at is not None,
            "mergeable": mergeable,
            "rebaseable": mergeable,
            "mergeable_state": mergeable_state,
            "merged_by": self.user(pr.merged_by) if pr.merged_by else None,
            "comments": len(pr.comment_ids),
            "review_comments": 0,
            "maintainer_can_modify": False,
            "commits": repo.git.count_commits(pr.base_sha, pr.head_sha),
            "additions": additions,
            "deletions": deletions,
            "changed_files": files,
        }

    def issue(self, repo: Repo, pr: Pull) -> JsonObject:
        """The issue side of a pull request (GitHub serves every pull request as an issue too)."""
        api = f"{self.api_url}/repos/{repo.full_name}"
        html = f"{self.web_url}/{repo.full_name}/pull/{pr.number}"
        return {
            "url": f"{api}/issues/{pr.number}",
            "repository_url": api,
            "labels_url": f"{api}/issues/{pr.number}/labels{{/name}}",
            "comments_url": f"{api}/issues/{pr.number}/comments",
            "events_url": f"{api}/issues/{pr.number}/events",
            "html_url": html,
            "id": pr.issue_id,
            "node_id": f"I_{pr.issue_id}",
            "number": pr.number,
            "title": pr.title,
            "user": self.user(pr.author),
            "labels": [self.label(repo, repo.labels[name.lower()]) for name in pr.labels],
            "state": pr.state,
            "state_reason": None,
            "locked": False,
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "comments": len(pr.comment_ids),
            "created_at": pr.created_at,
            "updated_at": pr.updated_at,
            "closed_at": pr.closed_at,
            "author_association": "MEMBER",
            "active_lock_reason": None,
            "draft": pr.draft,
            "body": pr.body,
            "pull_request": {
                "url": f"{api}/pulls/{pr.number}",
                "html_url": html,
                "diff_url": f"{html}.diff",
                "patch_url": f"{html}.patch",
                "merged_at": pr.merged_at,
            },
        }

    def comment(self, repo: Repo, comment: Comment) -> JsonObject:
        api = f"{self.api_url}/repos/{repo.full_name}"
        return {
            "id": comment.id,
            "node_id": f"IC_{comment.id}",
            "url": f"{api}/issues/comments/{comment.id}",
            "html_url": (
                f"{self.web_url}/{repo.full_name}/pull/{comment.number}#issuecomment-{comment.id}"
            ),
            "issue_url": f"{api}/issues/{comment.number}",
            "body": comment.body,
            "user": self.user(comment.author),
            "created_at": comment.created_at,
            "updated_at": comment.updated_at,
            "author_association": "MEMBER",
        }

    def review(self, repo: Repo, review: Review) -> JsonObject:
        api = f"{self.api_url}/repos/{repo.full_name}"
        html = f"{self.web_url}/{repo.full_name}/pull/{review.number}"
        return {
            "id": review.id,
            "node_id": f"PRR_{review.id}",
            "user": self.user(review.author),
            "body": review.body,
            "state": review.state,
            "html_url": f"{html}#pullrequestreview-{review.id}",
            "pull_request_url": f"{api}/pulls/{review.number}",
            "author_association": "MEMBER",
            "_links": {
                "html": {"href": f"{html}#pullrequestreview-{review.id}"},
                "pull_request": {"href": f"{api}/pulls/{review.number}"},
            },
            "submitted_at": review.submitted_at,
            "commit_id": review.commit_id,
        }

    def status(self, repo: Repo, status: Status) -> JsonObject:
        return {
            "url": f"{self.api_url}/repos/{repo.full_name}/statuses/{status.sha}",
            "avatar_url": None,
            "id": status.id,
            "node_id": f"SC_{status.id}",
            "state": status.state,
            "description": status.description,
            "target_url": status.target_url,
            "context": status.context,
            "created_at": status.created_at,
            "updated_at": status.created_at,
            "creator": self.user(status.creator),
        }

    def combined_status(self, repo: Repo, sha: str, latest: list[Status]) -> JsonObject:
        states = {status.state for status in latest}
        if states & {"error", "failure"}:
            state = "failure"
        elif not latest or "pending" in states:
            state = "pending"
        else:
            state = "success"
        api = f"{self.api_url}/repos/{repo.full_name}"
        return {
            "state": state,
            "statuses": [self.status(repo, status) for status in latest],
            "sha": sha,
            "total_count": len(latest),
            "repository": self.repo(repo),
            "commit_url": f"{api}/commits/{sha}",
            "url": f"{api}/commits/{sha}/status",
        }

    def commit(self, repo: Repo, sha: str) -> JsonObject:
        info = repo.git.commit_info(sha)
        api = f"{self.api_url}/repos/{repo.full_name}"
        web = f"{self.web_url}/{repo.full_name}"
        author_date = github_time(info.author_date)
        committer_date = github_time(info.committer_date)
        return {
            "sha": info.sha,
            "node_id": f"C_{info.sha}",
            "url": f"{api}/commits/{info.sha}",
            "html_url": f"{web}/commit/{info.sha}",
            "comments_url": f"{api}/commits/{info.sha}/comments",
            "commit": {
                "url": f"{api}/git/commits/{info.sha}",
                "message": info.message,
                "author": {
                    "name": info.author_name,
                    "email": info.author_email,
                    "date": author_date,
                },
                "committer": {
                    "name": info.committer_name,
                    "email": info.committer_email,
                    "date": committer_date,
                },
                "tree": {"sha": info.tree, "url": f"{api}/git/trees/{info.tree}"},
                "comment_count": 0,
            },
            "author": None,
            "committer": None,
            "parents": [
                {
                    "sha": parent,
                    "url": f"{api}/commits/{parent}",
                    "html_url": f"{web}/commit/{parent}",
                }
                for parent in info.parents
            ],
            "files": [],
        }
