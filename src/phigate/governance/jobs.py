"""Jobs and their per-instance records, so statistics and history outlive the process.

A job names the profile version it runs under (always an approved one, by default the active
one), its source by keyed hash (never a path: folder names can hold patient names), its site
and who started it. Each input instance adds one :class:`phigate.record.InstanceResult`;
statistics are computed from those records, so they always agree with what was stored.
Status moves queued → running → completed, pending_review (some records need a human) or
failed.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from phigate.governance.audit import Outcome, record_event, require
from phigate.governance.authz import Operation, Principal, Resource, authorize
from phigate.governance.errors import InvalidInput, NotFound
from phigate.governance.models import InstanceRecord, Job, Site, utcnow
from phigate.governance.policy_library import version_for_job
from phigate.record import InstanceResult, PHIFinding, Status

_REF_PATTERN = re.compile(r"^[A-Za-z0-9_.:=+-]{1,128}$")
_FINISHED = ("completed", "pending_review", "failed")
RECORD_FIELDS = tuple(item.name for item in fields(InstanceResult))
_MAX_ERROR = 500


@dataclass(frozen=True, slots=True)
class JobStatistics:
    """Counts for one job. ``inputs == written + filtered + quarantined`` always holds."""

    job_id: int
    status: str
    inputs: int
    written: int
    filtered: int
    quarantined: int
    requires_review: int
    reasons: dict[str, int] = field(default_factory=dict)
    modalities: dict[str, int] = field(default_factory=dict)
    actions: dict[str, dict[str, int]] = field(default_factory=dict)
    bytes_in: int = 0
    bytes_out: int = 0
    elapsed_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {item: getattr(self, item) for item in self.__slots__}


def job_to_dict(job: Job) -> dict[str, Any]:
    """A JSON-ready view of a job row."""
    return {
        "id": job.id,
        "name": job.name,
        "status": job.status,
        "profile_name": job.profile_name,
        "profile_version": job.profile_version,
        "source_ref": job.source_ref,
        "site": job.site,
        "modality_profiles": job.modality_profiles,
        "created_by": job.created_by,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "error": job.error,
    }


def _record_row(job_id: int, result: InstanceResult) -> dict[str, Any]:
    data = result.to_dict()
    row = {name: data[name] for name in RECORD_FIELDS}
    row["job_id"] = job_id
    return row


def _record_from_row(row: InstanceRecord) -> InstanceResult:
    values = {name: getattr(row, name) for name in RECORD_FIELDS}
    values["status"] = Status(row.status)
    values["findings"] = [_finding(item) for item in row.findings]
    return InstanceResult(**values)


def _finding(data: dict[str, Any]) -> PHIFinding:
    box = data.get("box")
    return PHIFinding(**{**data, "box": tuple(box) if box is not None else None})


class JobStore:
    """Create, fill, finish and read jobs as ``actor``; every call is authorised."""

    def __init__(self, session: Session, actor: Principal) -> None:
        self.session = session
        self.actor = actor

    def create_job(
        self,
        *,
        name: str,
        profile_name: str,
        source_ref: str,
        profile_version: str | None = None,
        site: str | None = None,
        modality_profiles: Mapping[str, tuple[str, str]] | None = None,
    ) -> Job:
        """Queue a job under an approved profile version (the active one by default).

        ``modality_profiles`` maps a modality to the (name, version) of the approved profile
        that governs its instances instead, as a site's modality defaults ask.
        """
        require(self.session, self.actor, Operation.JOB_RUN, Resource(site=site))
        if not _REF_PATTERN.match(source_ref):
            raise InvalidInput("the job source must be a keyed hash, not a path or a name")
        if (
            site is not None
            and self.session.scalar(select(Site.id).where(Site.name == site)) is None
        ):
            raise NotFound(f"no site named {site!r}; add it with `phigate site add`")
        version = version_for_job(self.session, profile_name, profile_version)
        by_modality = {
            modality: {"name": name, "version": version_for_job(self.session, name, ref).version}
            for modality, (name, ref) in sorted((modality_profiles or {}).items())
        }
        job = Job(
            name=name[:200],
            profile_name=profile_name,
            profile_version=version.version,
            source_ref=source_ref,
            site=site,
            modality_profiles=by_modality or None,
            created_by_id=self.actor.user_id,
            created_by=self.actor.name,
            status="queued",
        )
        self.session.add(job)
        self.session.flush()
        record_event(
            self.session,
            actor=self.actor,
            operation="job.create",
            objects=[f"job:{job.id}", f"source:{source_ref}"],
            profile_version=job.profile_version,
        )
        return job

    def _job_for_update(self, job_id: int) -> Job:
        job = self._load(job_id)
        require(
            self.session,
            self.actor,
            Operation.JOB_RUN,
            Resource(site=job.site),
            objects=[f"job:{job.id}"],
        )
        if job.status in _FINISHED:
            raise InvalidInput(f"job {job_id} is already {job.status}")
        return job

    def _load(self, job_id: int) -> Job:
        job = self.session.get(Job, job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id}; see `phigate job list`")
        return job

    def start_job(self, job_id: int) -> Job:
        """Mark a queued job as running."""
        job = self._job_for_update(job_id)
        job.status, job.started_at = "running", job.started_at or utcnow()
        record_event(
            self.session,
            actor=self.actor,
            operation="job.start",
            objects=[f"job:{job.id}"],
            profile_version=job.profile_version,
        )
        return job

    def add_records(self, job_id: int, results: Iterable[InstanceResult]) -> int:
        """Store a batch of records; each must name the job's profile version."""
        job = self._job_for_update(job_id)
        rows = [_record_row(job.id, result) for result in results]
        allowed = {job.profile_version}
        allowed |= {entry["version"] for entry in (job.modality_profiles or {}).values()}
        for row in rows:
            if row["profile_version"] not in allowed:
                raise InvalidInput(f"a record names another profile version than job {job_id}")
        if rows:
            self.session.execute(insert(InstanceRecord), rows)
        return len(rows)

    def finish_job(self, job_id: int, *, error: str | None = None) -> Job:
        """Close a job: failed if ``error`` (a safe, PHI-free reason), pending review if any
        record needs a human, else completed."""
        job = self._job_for_update(job_id)
        job.finished_at = utcnow()
        job.started_at = job.started_at or job.finished_at
        if error is not None:
            job.status, job.error = "failed", error[:_MAX_ERROR]
        else:
            job.status = "pending_review" if self._needs_review(job.id) else "completed"
        outcome = Outcome.FAILURE if error is not None else Outcome.SUCCESS
        record_event(
            self.session,
            actor=self.actor,
            operation="job.finish",
            objects=[f"job:{job.id}"],
            outcome=outcome,
            profile_version=job.profile_version,
            reason=job.status,
        )
        return job

    def _needs_review(self, job_id: int) -> bool:
        query = select(InstanceRecord.id).where(
            InstanceRecord.job_id == job_id, InstanceRecord.requires_review.is_(True)
        )
        return self.session.scalar(query.limit(1)) is not None

    def get_job(self, job_id: int) -> Job:
        """One job, if the actor may read it."""
        job = self._load(job_id)
        require(
            self.session,
            self.actor,
            Operation.JOB_READ,
            Resource(site=job.site),
            objects=[f"job:{job.id}"],
        )
        return job

    def list_jobs(self, *, status: str | None = None, limit: int = 50) -> list[Job]:
        """The newest jobs the actor may read, optionally of one status."""
        sites = sorted(self.actor.sites or ())
        probe = Resource(site=sites[0] if sites else None)
        require(self.session, self.actor, Operation.JOB_READ, probe)
        query = select(Job).order_by(Job.id.desc())
        if status is not None:
            query = query.where(Job.status == status)
        readable = []
        for job in self.session.scalars(query.execution_options(yield_per=500)):
            if authorize(self.actor, Operation.JOB_READ, Resource(site=job.site)):
                readable.append(job)
                if len(readable) >= limit:
                    break
        return readable

    def records(
        self, job_id: int, *, requires_review: bool | None = None
    ) -> Iterator[InstanceResult]:
        """The job's records, in the order they were stored."""
        self.get_job(job_id)
        query = select(InstanceRecord).where(InstanceRecord.job_id == job_id)
        if requires_review is not None:
            query = query.where(InstanceRecord.requires_review.is_(requires_review))
        for row in self.session.scalars(
            query.order_by(InstanceRecord.id).execution_options(yield_per=1000)
        ):
            yield _record_from_row(row)

    def job_statistics(self, job_id: int) -> JobStatistics:
        """Counts by status, reason, modality and header action, bytes and elapsed time."""
        job = self.get_job(job_id)
        by_status = self._count_by(job_id, InstanceRecord.status)
        elapsed = None
        if job.started_at and job.finished_at:
            elapsed = (job.finished_at - job.started_at).total_seconds()
        bytes_in, bytes_out = self.session.execute(
            select(
                func.coalesce(func.sum(InstanceRecord.bytes_in), 0),
                func.coalesce(func.sum(InstanceRecord.bytes_out), 0),
            ).where(InstanceRecord.job_id == job_id)
        ).one()
        return JobStatistics(
            job_id=job.id,
            status=job.status,
            inputs=sum(by_status.values()),
            written=by_status.get("written", 0),
            filtered=by_status.get("filtered", 0),
            quarantined=by_status.get("quarantined", 0),
            requires_review=self._count_review(job_id),
            reasons=self._count_by(job_id, InstanceRecord.reason),
            modalities=self._count_by(job_id, InstanceRecord.modality),
            actions=self._count_actions(job_id),
            bytes_in=int(bytes_in),
            bytes_out=int(bytes_out),
            elapsed_seconds=elapsed,
        )

    def _count_by(self, job_id: int, column: Any) -> dict[str, int]:
        query = (
            select(column, func.count())
            .where(InstanceRecord.job_id == job_id, column.is_not(None))
            .group_by(column)
        )
        return {str(key): int(count) for key, count in self.session.execute(query)}

    def _count_review(self, job_id: int) -> int:
        query = select(func.count()).where(
            InstanceRecord.job_id == job_id, InstanceRecord.requires_review.is_(True)
        )
        return int(self.session.scalar(query) or 0)

    def _count_actions(self, job_id: int) -> dict[str, dict[str, int]]:
        counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        query = select(InstanceRecord.actions).where(InstanceRecord.job_id == job_id)
        for actions in self.session.scalars(query.execution_options(yield_per=1000)):
            for keyword, action in actions.items():
                counts[keyword][str(action)] += 1
        return {keyword: dict(counter) for keyword, counter in sorted(counts.items())}
