"""The served Recommender on the real 400-shopper sample, loaded from the registered bundle: it
scores exactly as the evaluation's fusion did, the registry's figures are its own, and it
answers by shopper, items, text or nothing, failing clearly on what it does not know; a bundle
registered before segments still serves."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from components.core.errors import InterestError
from components.core.io import read_json, read_parquet, write_json, write_parquet
from components.data.split import load_split
from components.evaluation.metrics import HEADLINE_PROTOCOL, HEADLINE_SUBSET, item_self_information
from components.evaluation.ranking import rank_cases, summarise
from components.models.baselines import train_counts
from components.registry.bundle import FILES, NO_SEGMENT, Bundle
from components.registry.store import registered
from components.serving.added_items import COLUMNS, AddedItems
from components.serving.recommender import UnknownItems, load_recommender, words

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def served(served_sample):
    return load_recommender(served_sample)


def test_registry_figures_are_the_served_recommenders_own(served_sample, served):
    """Every test case replayed through the loaded Recommender gives the figures its metadata holds."""
    params = served_sample
    _, metadata = registered(params)
    split = load_split(params)
    test = split.cases[split.cases["split"] == HEADLINE_SUBSET]
    ranked = rank_cases(served, list(test["history"]), test["target"].to_numpy(), params.evaluate)
    info = item_self_information(train_counts(split), params.evaluate.novelty_pseudocount)
    replayed = summarise(ranked[HEADLINE_PROTOCOL], params.evaluate, len(split.item_index), info)
    assert replayed == metadata["test_metrics"]
    ranking = read_json(params.path(params.evaluate.metrics_file))[HEADLINE_PROTOCOL][HEADLINE_SUBSET]
    assert metadata["test_metrics"] == ranking["fusion"]        # the served recommender's figures,
    assert metadata["model_test_metrics"] == ranking["interest_model_cold"]   # and the model's inside it
    assert served.bundle.manifest["fusion_weights"] == metadata["fusion_weights"]


def test_a_known_shopper_gets_the_list_of_their_history(served_sample, served):
    user, history = served.bundle.histories()[["user", "history"]].iloc[0]
    by_user = served.recommend(user=user, k=10)
    by_items = served.recommend(items=list(history), k=10)
    assert by_user["item"].tolist() == by_items["item"].tolist() and len(by_user) == 10
    assert not set(by_user["item"]) & set(history)
    assert by_user["by"].iloc[0] == "user" and by_items["by"].iloc[0] == "items"
    assert by_user["position"].tolist() == list(range(1, 11))


def test_excluded_items_never_come_back(served):
    first = served.recommend(k=5)
    again = served.recommend(k=5, exclude=first["item"].tolist()[:2])
    assert not set(first["item"][:2]) & set(again["item"])


def test_unknowns_fail_with_a_message_to_act_on(served):
    with pytest.raises(UnknownItems, match="unknown item ids"):
        served.recommend(items=["NO-SUCH-ITEM"])
    with pytest.raises(InterestError, match="unknown shopper"):
        served.recommend(user="nobody")
    with pytest.raises(InterestError, match="not items and text"):
        served.recommend(items=["x"], text="y")


def test_a_missing_bundle_or_version_is_named(served_sample, tmp_path):
    with pytest.raises(InterestError, match="not a complete model bundle"):
        Bundle.open(tmp_path)
    with pytest.raises(InterestError, match="is not in the model store"):
        load_recommender(served_sample, tag="interest_model:doesnotexist")


def test_a_bundle_from_before_segments_still_serves_and_a_new_one_needs_them(served, tmp_path):
    old = tmp_path / "format2"
    shutil.copytree(served.bundle.path, old)
    (old / FILES["segments"]).unlink()
    write_parquet(read_parquet(old / FILES["histories"]).drop(columns="segment"), old / FILES["histories"])
    write_json({**served.bundle.manifest, "format": 2}, old / FILES["manifest"])
    bundle = Bundle.open(old)
    assert (bundle.histories()["segment"] == NO_SEGMENT).all() and bundle.segment_popularity().empty
    write_json({**served.bundle.manifest, "format": 3}, old / FILES["manifest"])
    with pytest.raises(InterestError, match=f"missing {FILES['segments']}"):
        Bundle.open(old)
    write_json({**served.bundle.manifest, "format": 1}, old / FILES["manifest"])
    with pytest.raises(InterestError, match="bundle format 1 is not one this code reads"):
        Bundle.open(old)


def test_scores_are_the_fusion_of_the_bundled_scorers(served):
    histories = [[1, 2, 3], [5]]
    scores = served.score(histories)
    assert scores.shape == (2, served.n_items + 1) and np.isneginf(scores[:, 0]).all()
    assert {s.name for s in served.fusion.scorers} == set(served.bundle.fusion_weights)


def test_exploring_policies_keep_to_the_pool_and_log_their_propensities(served):
    history = list(served.bundle.histories()["history"].iloc[0])
    greedy = served.recommend(items=history, k=10)
    assert greedy["policy"].iloc[0] == "greedy" and (greedy["propensity"] == 1).all()
    pool = set(served.recommend(items=history, k=served.serving.explore_pool)["item"])
    for name in ("epsilon_greedy", "softmax", "thompson"):
        a = served.recommend(items=history, k=10, policy=name, rng=np.random.default_rng(3))
        b = served.recommend(items=history, k=10, policy=name, rng=np.random.default_rng(3))
        assert a.equals(b) and set(a["item"]) <= pool and not set(a["item"]) & set(history)
        assert ((a["propensity"] > 0) & (a["propensity"] <= 1)).all() and a["item"].is_unique
    with pytest.raises(InterestError, match="unknown policy"):
        served.recommend(items=history, policy="thompson-without-feedback")


@pytest.mark.parametrize("policy", ["greedy", "epsilon_greedy", "softmax", "thompson"])
def test_kept_shopper_scores_give_the_slates_of_scoring_the_catalogue(served, policy):
    """Every known shopper's slate from the kept best scores is the full scoring's (the same items
    and scores, up to the float rounding that batching concurrent requests gives anyway); a
    request the kept scores cannot answer exactly (few kept, many hidden, new engagements, products
    added since) scores the catalogue."""
    users = list(served.bundle.histories()["user"])
    k = 10
    reach = served.policy(policy).reach(k)
    depth = reach + 1   # one spare: a request whose hidden history holds two of the kept falls back

    def slates(**request) -> list:
        return [served.rank(user=u, k=k, policy=policy, rng=np.random.default_rng(5), **request) for u in users]
    served._tops = None
    full, shown_all = slates(), slates(hide_history=False)
    served.keep_shopper_tops(depth)
    kept, kept_all = slates(), slates(hide_history=False)
    for a, b in [*zip(full, kept), *zip(shown_all, kept_all)]:
        assert list(a.items) == list(b.items)
        np.testing.assert_allclose(a.scores, b.scores, atol=2e-4)
        np.testing.assert_allclose(a.propensities, b.propensities, atol=1e-5)
    histories = [served.item_indices(list(h)) for h in served.bundle.histories()["history"]]
    answered = [served._kept_scores(u, (), h, reach) is not None for u, h in zip(users, histories)]
    assert any(answered) and not all(answered)   # both ways taken on this sample
    assert served._kept_scores(users[0], ["some engagement"], [], reach) is None
    served.keep_shopper_tops(0)   # off: nothing kept anew, the kept rows stay
    assert served._tops is not None


def test_kept_shopper_scores_wait_for_products_added_since(served_sample, tmp_path):
    recommender = load_recommender(served_sample)
    recommender.keep_shopper_tops(served_sample.serving.explore_pool + 10)
    user = recommender.bundle.histories()["user"].iloc[0]
    assert recommender._kept_scores(user, (), [], 10) is not None
    vectors = recommender.item_text_vectors()[1:2]
    recommender.add_items(AddedItems(pd.DataFrame({"item": ["NEW-1"], "title": ["a new product"]}).reindex(columns=COLUMNS), vectors))
    assert recommender._kept_scores(user, (), [], 10) is None   # kept over the old catalogue: not used
    recommender.keep_shopper_tops(served_sample.serving.explore_pool + 10)
    assert recommender._kept_scores(user, (), [], 10) is not None


def test_the_popular_default_is_made_once_for_every_shorter_list(served_sample):
    recommender = load_recommender(served_sample)
    five = list(recommender.rank(k=5).items)
    twenty = list(recommender.rank(k=20).items)
    assert twenty[:5] == five == list(recommender.rank(k=5).items)   # the shorter list from the longer one's picks
    hidden = twenty[:2]
    assert list(recommender.rank(k=5, exclude=hidden).items) == [i for i in twenty if i not in hidden][:5]


def test_explanations_name_the_history_item_the_query_words_or_popularity(served):
    items = served.catalogue["item"].head(6).tolist()
    titles = dict(zip(served.catalogue["item"], served.catalogue["title"].fillna(served.catalogue["item"])))
    plain = served.rank(items=items, k=5)
    assert all(row["reason"] is None for row in plain.rows())                 # off unless asked
    explained = served.rank(items=items, k=5, explain=True)
    assert list(explained.items) == list(plain.items)                          # the same list, reasons added
    history_titles = {str(titles[i]) for i in items}
    for row in explained.rows():
        assert row["reason"].startswith("like ") and row["reason"].removeprefix("like ").removesuffix(
            ", which you engaged with") in history_titles
    item, title = next((i, t) for i, t in zip(served.catalogue["item"], served.catalogue["title"])
                       if isinstance(t, str) and len(words(t)) >= 2)
    query = f"{words(title)[0]} and something else"
    assert served.explanations([item], [], query) == (f"matches {words(title)[0]!r}",)
    for row in served.rank(text=query, k=10, explain=True).rows():      # each shares a word, or none
        shared = set(words(query)) & set(words(row["title"] or row["item"]))
        assert row["reason"] == (f"matches {', '.join(repr(w) for w in sorted(shared))}" if shared
                                 else "close in meaning to what you wrote")
    assert {row["reason"] for row in served.rank(k=3, explain=True).rows()} == {"popular in the shop"}
