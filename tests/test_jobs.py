"""Jobs beside the scrapes: schedule maths (site-local, DST), recording, failures, the thread."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

import i18n
from collectors.jobs import Calendar, Every, JobResult, JobRunner, Once, parse_schedule
from collectors.targets import ScrapeError
from helpers import wait_for
from i18n import msg

UTC = timezone.utc


def utc(*a) -> datetime:
    return datetime(*a, tzinfo=UTC)


# ---- schedules ---------------------------------------------------------------------


def test_monthly_first_day_0600_shanghai_is_the_previous_evening_in_utc():
    s = parse_schedule("monthly 1 06:00", "Asia/Shanghai")
    # Shanghai is UTC+8 all year: 1 Dec 06:00 local = 30 Nov 22:00 UTC
    assert s.next_run(utc(2026, 11, 20)) == utc(2026, 11, 30, 22, 0)
    # exactly at the slot: the next one is a month on (1 Jan 06:00 +08:00 = 31 Dec 22:00 UTC)
    assert s.next_run(utc(2026, 11, 30, 22, 0)) == utc(2026, 12, 31, 22, 0)
    # 30 Nov 23:00 UTC is already 1 Dec 07:00 in Shanghai, past the slot
    assert s.next_run(utc(2026, 11, 30, 23, 0)) == utc(2026, 12, 31, 22, 0)
    # December -> January crosses the year
    assert s.next_run(utc(2026, 12, 31, 22, 0)) == utc(2027, 1, 31, 22, 0)


def test_daily_slot_keeps_local_time_across_dst_changes():
    s = Calendar("daily", 2, 30, tz="Europe/Berlin")
    # winter (CET, UTC+1): 02:30 local = 01:30 UTC
    assert s.next_run(utc(2026, 3, 27, 12, 0)) == utc(2026, 3, 28, 1, 30)
    # 29 Mar 2026 clocks jump 02:00 -> 03:00: 02:30 does not exist; it runs at 01:30 UTC (03:30 CEST)
    assert s.next_run(utc(2026, 3, 28, 1, 30)) == utc(2026, 3, 29, 1, 30)
    # summer (CEST, UTC+2): 02:30 local = 00:30 UTC
    assert s.next_run(utc(2026, 3, 29, 1, 30)) == utc(2026, 3, 30, 0, 30)
    # 25 Oct 2026 clocks go 03:00 -> 02:00: 02:30 happens twice; it runs once, at the first (00:30 UTC)
    first = s.next_run(utc(2026, 10, 24, 12, 0))
    assert first == utc(2026, 10, 25, 0, 30)
    assert s.next_run(first) == utc(2026, 10, 26, 1, 30)          # back in CET: 02:30 = 01:30 UTC


def test_daily_slot_of_a_zone_ahead_of_utc_can_be_earlier_the_same_utc_day():
    s = parse_schedule("daily 02:00", "Asia/Shanghai")
    # 2026-11-20 17:00 UTC is 21 Nov 01:00 in Shanghai: the slot 21 Nov 02:00 = 20 Nov 18:00 UTC
    assert s.next_run(utc(2026, 11, 20, 17, 0)) == utc(2026, 11, 20, 18, 0)


def test_interval_and_once_schedules():
    e = parse_schedule("every 3h")
    assert e == Every(3 * 3600)
    assert e.first(utc(2026, 1, 1)) == utc(2026, 1, 1, 3) and e.next_run(utc(2026, 1, 1, 3)) == utc(2026, 1, 1, 6)
    assert Every(60, at_start=True).first(utc(2026, 1, 1)) == utc(2026, 1, 1)
    assert parse_schedule("every 15m") == Every(900) and parse_schedule("EVERY 30 s") == Every(30)
    o = parse_schedule("once")
    assert o.first(utc(2026, 1, 1)) == utc(2026, 1, 1) and o.next_run(utc(2026, 1, 1)) is None


@pytest.mark.parametrize("text", ["hourly", "every -3h", "daily 25:00", "monthly 31 06:00", "weekly 1 06:00"])
def test_bad_schedules_are_refused_with_the_reason(text):
    with pytest.raises(ValueError):
        parse_schedule(text)


def test_unknown_zone_is_refused_at_registration():
    with pytest.raises(Exception, match="Mars/Olympus"):
        Calendar("daily", 2, 0, tz="Mars/Olympus")


# ---- the runner ----------------------------------------------------------------------


class Clock:
    """Epoch seconds that a test moves by hand; the timer ticks 0.25 s per call."""

    def __init__(self, at: datetime):
        self.now = at.timestamp()
        self.ticks = 0.0

    def __call__(self) -> float:
        return self.now

    def timer(self) -> float:
        self.ticks += 0.25
        return self.ticks


T0 = utc(2026, 11, 20, 8, 0)


def job_runs(store):
    return store.con.execute("SELECT job, started_at, duration_s, ok, rows, error, error_msg, detail "
                             "FROM job_runs ORDER BY started_at, job").fetchall()


def test_runs_are_recorded_ok_and_failed_and_a_failure_stops_nothing(store):
    clock = Clock(T0)
    runner = JobRunner(store, clock=clock, timer=clock.timer)
    calls = []
    runner.add("count", Every(60), lambda now: calls.append(now) or JobResult(rows=7, detail="seven"))
    runner.add("broken", Every(60), lambda now: 1 / 0)
    assert runner.run_due() == []                         # nothing due at registration
    clock.now += 60
    runs = {r.job: r for r in runner.run_due()}
    assert set(runs) == {"count", "broken"} and calls == [utc(2026, 11, 20, 8, 1)]
    # each run's duration is two timer reads apart: 0.25 s with this timer
    assert runs["count"].ok and runs["count"].rows == 7 and runs["count"].duration_s == 0.25
    assert not runs["broken"].ok and runs["broken"].error == "ZeroDivisionError: division by zero"
    stored = {r[0]: r for r in job_runs(store)}
    assert stored["count"][1:5] == (utc(2026, 11, 20, 8, 1), 0.25, True, 7) and stored["count"][7] == "seven"
    assert stored["broken"][3] is False and stored["broken"][5] == "ZeroDivisionError: division by zero"
    assert json.loads(stored["broken"][6]) == [{"key": "job.error.exception",
                                               "params": {"type": "ZeroDivisionError", "detail": "division by zero"}}]
    # the failed job is still scheduled, a minute after its failed run
    clock.now += 60
    assert sorted(r.job for r in runner.run_due()) == ["broken", "count"]
    assert len(job_runs(store)) == 4


def test_an_error_with_a_message_key_is_stored_with_it_and_reads_in_chinese(store):
    clock = Clock(T0)
    runner = JobRunner(store, clock=clock, timer=clock.timer)

    def fail(now):
        raise ScrapeError(msg("msg.timeout", s="5"))

    runner.add("fetch", Every(60, at_start=True), fail)
    [run] = runner.run_due()
    assert run.error == "no answer within 5 s"
    (_, _, _, _, _, error, error_msg, _), = job_runs(store)
    assert i18n.render(error_msg, error, "zh-CN") == "5 秒内无应答"


def test_notes_of_a_successful_run_are_stored_as_keys(store):
    clock = Clock(T0)
    runner = JobRunner(store, clock=clock, timer=clock.timer)
    runner.add("noisy", Once(), lambda now: JobResult(rows=1, notes=[msg("msg.malformed", n=2)]))
    [run] = runner.run_due()
    assert run.ok and run.error == "2 malformed line(s) skipped"
    assert runner.run_due(utc(2027, 1, 1)) == []           # Once: never again
    assert runner.status()[0]["next_run"] is None


def test_a_calendar_job_runs_at_its_site_local_slot(store):
    clock = Clock(utc(2026, 11, 30, 21, 0))
    runner = JobRunner(store, clock=clock, timer=clock.timer)
    runner.add("monthly", parse_schedule("monthly 1 06:00", "Asia/Shanghai"), lambda now: 1)
    assert runner.run_due(utc(2026, 11, 30, 21, 59)) == []
    [run] = runner.run_due(utc(2026, 11, 30, 22, 0))       # 1 Dec 06:00 in Shanghai
    assert run.ok and run.rows == 1
    assert runner.status()[0]["next_run"] == "2026-12-31T22:00:00+00:00"


def test_registering_a_name_twice_is_an_error(store):
    runner = JobRunner(store)
    runner.add("reopen", Every(60), lambda now: None)
    with pytest.raises(ValueError, match="reopen"):
        runner.add("reopen", Every(60), lambda now: None)


def test_a_failing_store_does_not_stop_the_runner():
    class Broken:
        def record_job_run(self, **kw):
            raise OSError("disk full")

    clock = Clock(T0)
    runner = JobRunner(Broken(), clock=clock, timer=clock.timer)
    runner.add("x", Every(60, at_start=True), lambda now: 3)
    [run] = runner.run_due()
    assert run.ok and runner.jobs["x"].last is run


def test_the_thread_runs_due_jobs_and_signals_each_run(store):
    seen = []
    runner = JobRunner(store, on_run=seen.append)
    runner.add("now", Once(), lambda now: 5)
    runner.start()
    try:
        assert wait_for(lambda: len(seen) == 1, event=runner.ran), "the job did not run"
    finally:
        runner.stop()
    assert seen[0].job == "now" and seen[0].rows == 5
    assert [r[0] for r in job_runs(store)] == ["now"]


def test_a_failing_job_in_the_thread_leaves_the_others_running(store):
    seen = []
    runner = JobRunner(store, on_run=seen.append)
    runner.add("broken", Once(), lambda now: 1 / 0)
    runner.add("fine", Once(), lambda now: 2)
    runner.start()
    try:
        assert wait_for(lambda: len(seen) == 2, event=runner.ran), "not every job ran"
    finally:
        runner.stop()
    assert {r.job: r.ok for r in seen} == {"broken": False, "fine": True}
    assert sorted((r[0], r[3]) for r in job_runs(store)) == [("broken", False), ("fine", True)]
