"""A thin client of a Label Studio server (``label-studio-sdk`` 2.x), used by the Label Studio labeler and judge.

It knows projects by title, so a rerun on the same data reuses its project;
it knows tasks by the ``key`` in their data, so a rerun never imports a task
twice and a crash between import and export loses nothing (the tasks and
their annotations stay on the server). The token is read from the
environment variable that ``label_studio.token_env`` names and is never
logged. Install the SDK with ``pip install -e '.[labelstudio]'`` (``make
setup`` does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tasks.errors import ConfigError, RFTError, TransientError
from tasks.options import opt

IMPORT_BATCH = 500


@dataclass(frozen=True)
class StudioWait:
    """How a stage waits for people in Label Studio: the settings that ``label`` (``label.source: label_studio``)
    and a people judge (``judges.<name>: {kind: label_studio}``) share. A task is an item people label: a pair
    or a response when labelling, a comparison of candidate and champion when judging."""

    min_annotations_per_task: int = opt(1, "label_studio: a task is done when it has this many annotations.",
                                        ge=1)
    completion: float = opt(1.0, "label_studio: the stage goes on when this share of the tasks is done.",
                            gt=0, le=1)
    overlap: float = opt(0.0, "label_studio: share of the tasks that two or more people see (agreement is "
                         "measured on them).", ge=0, le=1)
    timeout_s: float = opt(86400.0, "label_studio: the longest wait, in seconds; then the stage goes on with the "
                           "labels it has (none: it stops), a judge's unanswered comparisons counting as ties.",
                           gt=0)
    poll_s: float = opt(10.0, "label_studio: seconds between progress checks.", gt=0)
    wait: str = opt("poll", "label_studio outside Prefect (dvc repro): poll (wait, printing progress, up to "
                    "timeout_s) or stop (exit 3 with how to resume once people have labelled).",
                    choices=("poll", "stop"))


class LabelStudioUnavailable(RFTError):
    """The server cannot be reached or refused the token."""


class LabelStudioDown(LabelStudioUnavailable, TransientError):
    """The server cannot be reached, or answered 429 or 5xx: it may be restarting. A wait keeps polling."""


@dataclass(frozen=True)
class TaskState:
    id: int
    key: str
    data: dict
    is_labeled: bool
    annotations: list          # dicts: result, completed_by, was_cancelled, lead_time, created_at


def _sdk():
    try:
        import label_studio_sdk
    except ImportError:
        raise ConfigError("label.source: label_studio needs the Label Studio SDK: pip install -e '.[labelstudio]' "
                          "(make setup installs it)") from None
    return label_studio_sdk


class Studio:
    def __init__(self, cfg):
        token = os.environ.get(cfg.token_env)           # a secret: named in params.yaml, kept in the environment
        if not token:
            raise ConfigError(f"label_studio.token_env: the environment variable {cfg.token_env} is not set (it "
                              "holds the Label Studio API token; infra/label_studio.sh prints one)")
        self.cfg = cfg
        self.client = _sdk().LabelStudio(base_url=cfg.url.rstrip("/"), api_key=token, timeout=cfg.timeout)

    def _call(self, what: str, fn, *args, **kw):
        import httpx
        from label_studio_sdk.core.api_error import ApiError

        try:
            return fn(*args, **kw)
        except httpx.TransportError as exc:
            raise LabelStudioDown(f"label_studio.url: cannot reach Label Studio at {self.cfg.url} while "
                                  f"trying to {what} ({type(exc).__name__}); start it with "
                                  "infra/label_studio.sh start") from None
        except ApiError as exc:
            if exc.status_code in (401, 403):
                raise LabelStudioUnavailable(f"label_studio.token_env: Label Studio at {self.cfg.url} refused the "
                                             f"token in ${self.cfg.token_env} ({exc.status_code}) while trying to "
                                             f"{what}") from None
            kind = LabelStudioDown if exc.status_code == 429 or (exc.status_code or 0) >= 500 else \
                LabelStudioUnavailable
            raise kind(f"Label Studio at {self.cfg.url} answered {exc.status_code} while trying "
                       f"to {what}: {str(exc.body)[:300]}") from None

    def check(self) -> None:
        self._call("check the token", self.client.users.whoami)

    def project(self, title: str, label_config: str, instructions: str, maximum_annotations: int,
                overlap_percent: int) -> int:
        """The id of the project with this title, created (with this config) if there is none."""
        found = [p for p in self._call("list projects", lambda: list(self.client.projects.list(title=title)))
                 if p.title == title]
        if found:
            return found[0].id
        p = self._call("create a project", self.client.projects.create, title=title, label_config=label_config,
                       expert_instruction=instructions, show_instruction=True, show_skip_button=True,
                       maximum_annotations=maximum_annotations, overlap_cohort_percentage=overlap_percent,
                       sampling="Uniform sampling" if overlap_percent < 100 else "Sequential sampling")
        return p.id

    def tasks(self, project: int) -> list[TaskState]:
        out = []
        # A pager fetches its later pages as it is iterated: listed whole inside _call, so their errors are named.
        pager = self._call("list tasks", lambda: list(self.client.tasks.list(project=project, fields="all",
                                                                             page_size=500)))
        for t in pager:
            data = t.data or {}
            anns = [a if isinstance(a, dict) else a.dict() for a in (t.annotations or [])]
            out.append(TaskState(t.id, str(data.get("key", "")), data, bool(t.is_labeled), anns))
        return out

    def sync(self, project: int, tasks: list[dict]) -> tuple[int, int]:
        """Import the tasks whose ``key`` the project lacks: (imported, already there)."""
        have = {t.key for t in self.tasks(project)}
        new = [t for t in tasks if t["key"] not in have]
        for i in range(0, len(new), IMPORT_BATCH):
            self._call("import tasks", self.client.projects.import_tasks, id=project, request=new[i:i + IMPORT_BATCH])
        return len(new), len(tasks) - len(new)

    def annotate(self, task_id: int, result: list[dict], lead_time: float | None = None,
                 user: int | None = None) -> None:
        """Submit an annotation as the token's user, or as ``user`` (tests, and scripted or imported labelling)."""
        kw = {"lead_time": lead_time} if lead_time is not None else {}
        if user is not None:
            kw["completed_by"] = user
        self._call("submit an annotation", self.client.annotations.create, id=task_id, result=result, **kw)

    def user(self, email: str) -> int:
        """The id of the user with this e-mail, created (without a password) if there is none."""
        for u in self._call("list users", lambda: list(self.client.users.list())):
            if u.email == email:
                return u.id
        return self._call("create a user", self.client.users.create, username=email.split("@")[0],
                          email=email).id

    def user_ids(self, names) -> dict[int, str]:
        """``{user id: e-mail}`` of the accounts whose e-mail (in any case) or username is in ``names``."""
        wanted = set(names) | {n.lower() for n in names}
        return {u.id: u.email for u in self._call("list users", lambda: list(self.client.users.list()))
                if (u.email or "").lower() in wanted or getattr(u, "username", None) in wanted}

    def url_of(self, project: int) -> str:
        return f"{self.cfg.url.rstrip('/')}/projects/{project}/data"
