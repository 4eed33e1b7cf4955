"""`interest monitor-feedback` on the registered sample: slates served by the real app, feedback
sent back through it (and a bot flooding it), one monitoring pass, then a second that starts
where the first ended."""
from __future__ import annotations

import pytest

from components.core.config.loader import load_params
from components.core.io import read_json, read_parquet
from components.monitoring.monitor import monitor
from components.serving.app import FeedbackInput, ServingApp

pytestmark = pytest.mark.model


def test_a_pass_checks_the_window_measures_it_and_moves_on(served_sample, tmp_path):
    env = {"INTEREST__SERVING__STORE_URL": f"sqlite:///{tmp_path / 'feedback.db'}",
           "INTEREST__SERVING__ADDED_ITEMS_DIR": str(tmp_path / "added"),
           "INTEREST__MONITOR__STATE_FILE": str(tmp_path / "state.json"),
           "INTEREST__MONITOR__OUT_DIR": str(tmp_path / "feedback"),
           "INTEREST__MONITOR__REPORTS_DIR": str(tmp_path / "reports"),
           "INTEREST__MONITOR__METRICS_FILE": str(tmp_path / "online.json"),
           "INTEREST__MONITOR__PLOT_FILE": str(tmp_path / "online.png")}
    params = load_params(served_sample.root / "params.yaml", environ=env)
    app = ServingApp(params)
    try:
        histories = app.recommender.bundle.histories().head(20)["history"]
        events = []
        for n, history in enumerate(histories):
            answer = app.recommend(items=list(history), k=10, session_id=None)
            first = answer["items"][0]["item"]
            events.append(FeedbackInput(f"imp-{n}", "impression", f"shopper-{n}", first, answer["request_id"]))
            if n % 2 == 0:
                events.append(FeedbackInput(f"clk-{n}", "click", f"shopper-{n}", first, answer["request_id"]))
        flood_item = app.recommender.catalogue["item"].iloc[0]
        events += [FeedbackInput(f"bot-{n}", "click", "a-bot", flood_item) for n in range(params.monitor.max_events_per_minute + 5)]
        app.feedback(events)
        app.store.flush()
    finally:
        app.close()

    found = monitor(params)
    window = found.window
    assert window["events"] == 20 + 10 + params.monitor.max_events_per_minute + 5 and window["slates"] == 20
    assert window["quarantined_by_expectation"] == {"not_a_bot_flood": params.monitor.max_events_per_minute + 5}
    [row] = window["metrics"]
    assert row["slates"] == 20 and row["ctr"] == pytest.approx(10 / 200, abs=1e-6) and 0 < row["coverage"] < 1
    assert (tmp_path / "online.png").stat().st_size > 0 and read_json(tmp_path / "online.json")["latest"] == window
    # the flood is most of the window: held back from training, and the decision says why
    assert found.retrain is False and "not_a_bot_flood" in window["retrain"]["held_back"] and "held back" in found.why
    assert window["quality"]["rows"] == window["events"] and window["drift"]["reference"] == "training"

    again = monitor(params, until=window["until"] + 0.002).window   # a pass within the same second keeps its own window
    assert again["since"] == window["until"] and again["events"] == 0 and again["metrics"] == []
    assert [w["name"] for w in read_json(tmp_path / "online.json")["windows"]] == [window["name"], again["name"]]
    assert len(read_parquet(window["files"]["valid"])) == window["check"]["valid"] > 0   # not overwritten by the second
