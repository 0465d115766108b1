"""The capacity tables (migration 017_capacity.sql): the forecast job's results (one row a fitted
series per run, and its daily points) and the saved what-if scenarios. The job keeps only its
newest run of each series; a scenario is a name and a list of dated changes (JSON), never a
change to the centre's configuration."""

from __future__ import annotations

from queries.catalogue import Table, col

TABLES: tuple[Table, ...] = (
    Table("capacity_fits", (
        col("run_at", "TIMESTAMPTZ", "when the forecast job fitted it", null=False),
        col("series", "VARCHAR", "measure:by[:key], e.g. peak_gpus:cluster:train-a", null=False),
        col("measure", "VARCHAR", "allocated_gpus | peak_gpus | it_kw | facility_kw | cooling_kw (mean or peak)",
            null=False),
        col("by_key", "VARCHAR", "fleet | cluster | model | tenant | site", null=False),
        col("key", "VARCHAR", "the cluster, model, tenant or site; NULL for the fleet"),
        col("unit", "VARCHAR", "GPUs | kW", null=False),
        col("tz", "VARCHAR", "the calendar of its days", null=False),
        col("model", "VARCHAR", "the ETS form the backtest chose (AAA, AAdA, ANA); NULL when none could be fitted"),
        col("trusted", "BOOLEAN", null=False),
        col("reason_msg", "VARCHAR", "why it is not trusted, as message keys (i18n.dumps JSON)"),
        col("history_days", "INTEGER", "days of history it was fitted on", null=False),
        col("history_start", "TIMESTAMPTZ", "its first day's start"),
        col("history_end", "TIMESTAMPTZ", "the start of the day after its last"),
        col("backtests", "VARCHAR", "JSON list: weeks, mape_pct, mase, cover80_pct, cover95_pct"),
        col("scores", "VARCHAR", "JSON: each candidate model's mean backtest MASE"),
        col("capacity", "DOUBLE", "what it runs out against (owned GPUs, site kW); NULL: none"),
        col("measured_now", "DOUBLE", "the highest daily value of the last smoothing window"),
        col("headroom_now", "DOUBLE", "capacity - measured_now"),
        col("exhaust_median", "TIMESTAMPTZ", "the day the smoothed median reaches capacity"),
        col("exhaust_upper", "TIMESTAMPTZ", "the day the smoothed upper band reaches capacity"),
        col("band", "INTEGER", "the upper band used: 80 or 95", null=False),
        col("fit_s", "DOUBLE", "seconds the fit and its backtests took"),
    ), key=("series", "run_at"), primary_key=True, note="one fitted series per forecast run (newest kept)"),
    Table("capacity_forecasts", (
        col("run_at", "TIMESTAMPTZ", null=False),
        col("series", "VARCHAR", null=False),
        col("day", "TIMESTAMPTZ", "the local day's start", null=False),
        col("median", "DOUBLE", null=False),
        col("lo80", "DOUBLE", null=False), col("hi80", "DOUBLE", null=False),
        col("lo95", "DOUBLE", null=False), col("hi95", "DOUBLE", null=False),
        col("median_smooth", "DOUBLE", "centred moving mean of the median", null=False),
        col("upper_smooth", "DOUBLE", "centred moving mean of the upper band (capacity_fits.band)", null=False),
    ), key=("series", "run_at", "day"), primary_key=True, note="a fitted series' daily points over the horizon"),
    Table("capacity_scenarios", (
        col("name", "VARCHAR", "its id in URLs", null=False),
        col("title", "VARCHAR", "what people call it"),
        col("changes", "VARCHAR", "JSON list of dated changes (queries/scenarios.py)", null=False),
        col("horizon_months", "INTEGER", null=False),
        col("created_at", "TIMESTAMPTZ", null=False),
        col("updated_at", "TIMESTAMPTZ", null=False),
        col("created_by", "VARCHAR", "who saved it, when sign-in is on"),
    ), key=("name",), primary_key=True, note="saved what-if scenarios; never the centre's configuration"),
)
