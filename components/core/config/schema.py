"""params.yaml's sections, one frozen pydantic model each, forbidding unknown keys: a typo or a
missing key fails at start naming the dotted key. Cross-key rules live beside their section."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from components.core.config.reads import Section

# how a slate is drawn from the scores (components/serving/policies.py): settings and requests name one
PolicyName = Literal["greedy", "epsilon_greedy", "softmax", "thompson"]


class DownloadParams(Section):
    enabled: bool
    base_url: str
    dir: Path
    timeout_s: float = Field(gt=0)


class DataParams(Section):
    dataset: str
    mirror_dir: Path
    mirror_folders: dict[str, str]
    download: DownloadParams
    sample_users: int = Field(ge=0)
    seed: int


class IngestParams(Section):
    out_dir: Path
    pseudonym_key_env: str
    pseudonym_dev_key: str
    pseudonym_length: int = Field(ge=8, le=64)
    feedback_dir: Path
    feedback_kinds: list[str] = Field(min_length=1)


class RowBounds(Section):
    min: int = Field(ge=0)
    max: int = Field(ge=0)


class RowCountParams(Section):
    interactions: RowBounds
    items: RowBounds
    reviews: RowBounds


class ValidateParams(Section):
    expectations_dir: Path
    out_dir: Path
    reports_dir: Path
    row_count: RowCountParams
    title_coverage_min: float = Field(ge=0.0, le=1.0)
    on_failure: dict[str, Literal["quarantine", "stop"]]


class SplitParams(Section):
    out_dir: Path
    cold_item_fraction: float = Field(ge=0.0, lt=1.0)
    seed: int
    metrics_file: Path


class EmbedParams(Section):
    encoder: str
    fields: tuple[str, ...]
    max_chars: int = Field(gt=0)
    max_tokens: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    device: str
    out_dir: Path


class ModelParams(Section):
    mode: Literal["id", "text", "id+text"]
    max_len: int = Field(gt=0)
    hidden: int = Field(gt=0)
    n_layers: int = Field(gt=0)
    n_heads: int = Field(gt=0)
    dropout: float = Field(ge=0.0, lt=1.0)
    id_dropout: float = Field(ge=0.0, lt=1.0)
    repeat_bias: bool
    frequency_mix: float = Field(ge=0.0, le=1.0)
    frequency_bins: int = Field(gt=0)


class TrainParams(Section):
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    batch_size: int = Field(gt=0)
    bucket_batches: int = Field(gt=0)
    epochs: int = Field(gt=0)
    patience: int = Field(gt=0)
    plateau_decay: float = Field(gt=0, le=1)
    max_minutes: float = Field(ge=0)
    n_negatives: int = Field(ge=0)
    every_prefix: bool
    grad_clip: float = Field(ge=0)
    weight_average: float = Field(ge=0, lt=1)
    weight_average_max_epochs: float = Field(gt=0)
    seed: int
    deterministic: bool
    warm_start: bool
    device: str
    eval_batch_size: int = Field(gt=0)
    final_epochs: int = Field(ge=0)
    final_newest_passes: int = Field(ge=0)
    final_newest_lr_scale: float = Field(gt=0)
    model_file: Path
    final_model_file: Path
    metrics_file: Path
    history_file: Path
    processes: int = Field(ge=1)
    agents_dir: Path


class ItemKnnParams(Section):
    neighbours: int = Field(gt=0)
    recency_decay: float = Field(gt=0.0, le=1.0)


class TextSimilarityParams(Section):
    recency_decay: float = Field(gt=0.0, le=1.0)


class BaselinesParams(Section):
    item_knn: ItemKnnParams
    text: TextSimilarityParams


class FusionParams(Section):
    weight_grid: tuple[float, ...] = Field(min_length=1)
    rounds: int = Field(ge=1)
    metric_k: int = Field(gt=0)
    protocol: Literal["unmasked", "masked"]
    cold_offset_max: float = Field(ge=0)
    bisection_steps: int = Field(gt=0)
    cache_gb: float = Field(ge=0)


class EvaluateParams(Section):
    ks: tuple[int, ...] = Field(min_length=1)
    beyond_k: int = Field(gt=0)
    novelty_pseudocount: float = Field(gt=0.0)
    batch_size: int = Field(gt=0)
    metrics_file: Path
    comparison_file: Path
    report_file: Path


class PeersParams(Section):
    python: Path
    runner: Path
    dir: Path
    budget_seconds: float = Field(ge=0)
    recbole: dict[str, Any]
    models: dict[str, dict[str, Any]] = Field(min_length=1)
    metrics_file: Path
    plot: Path


class BenchmarkParams(Section):
    published_file: Path
    serve_dir: Path
    serve_replay_cases: int = Field(ge=0)
    serve_rate: int = Field(gt=0)
    serve_seconds: int = Field(gt=0)
    serve_step_rates: tuple[int, ...] = Field(min_length=1)
    serve_step_seconds: int = Field(gt=0)
    serve_p99_limit_ms: float = Field(gt=0)
    serve_workers: tuple[int, ...] = Field(min_length=1)
    serve_settle_seconds: float = Field(ge=0)
    serve_metrics_file: Path
    consistency_levels: tuple[float, ...] = Field(min_length=1)
    consistency_cases: int = Field(ge=0)
    consistency_metrics_file: Path
    consistency_plot: Path
    seeds: tuple[int, ...] = Field(min_length=2)
    seeds_dir: Path
    seeds_metrics_file: Path
    train_scale_processes: tuple[int, ...] = Field(min_length=1)
    train_scale_seeds: tuple[int, ...] = Field(min_length=1)
    train_scale_users: int = Field(ge=0)
    train_scale_dir: Path
    train_scale_metrics_file: Path
    peers: PeersParams


class RegistryParams(Section):
    home: Path
    model_name: str
    record_file: Path


class ObjectStoreParams(Section):
    dir: Path
    s3_port: int = Field(ge=1, le=65535)
    bucket: str
    dvc_remote: str
    start_seconds: float = Field(gt=0)


class AirflowClusterParams(Section):
    dir: Path
    api_port: int = Field(ge=1, le=65535)
    worker_concurrency: int = Field(ge=1)
    task_heartbeat_timeout_seconds: int = Field(ge=1)
    start_seconds: float = Field(gt=0)


class GateParams(Section):
    ndcg_tolerance: float = Field(ge=0, lt=1)
    cold_recall_tolerance: float = Field(ge=0, lt=1)
    cold_warm_floor: float = Field(ge=0, le=1)
    alpha: float = Field(gt=0, lt=1)
    bootstrap: int = Field(gt=0)
    seed: int
    cases: int = Field(ge=0)
    ope_slates: int = Field(gt=0)
    ope_min_support: float = Field(ge=0, le=1)
    ope_tolerance: float = Field(ge=0, lt=1)
    metrics_file: Path
    bento_record_file: Path


class RetrainParams(Section):
    min_events: int = Field(ge=0)
    drift_views: list[Literal["items", "shoppers", "scores", "texts"]]
    metric: str
    max_metric_drop: float = Field(gt=0, le=1)
    max_quarantine_share: float = Field(ge=0, le=1)


class MonitorParams(Section):
    max_events_per_minute: int = Field(gt=0)
    on_failure: dict[str, Literal["quarantine", "stop"]]
    k: int = Field(gt=0)
    next_action_seconds: float = Field(gt=0)
    state_file: Path
    out_dir: Path
    reports_dir: Path
    metrics_file: Path
    plot_file: Path
    drift_dir: Path
    drift_share: float = Field(gt=0, le=1)
    embedding_drift_threshold: float = Field(gt=0.5, lt=1)
    drift_min_rows: int = Field(gt=0)
    text_drift_rows: int = Field(gt=0)
    drift_reference_shoppers: int = Field(gt=0)
    seed: int
    retrain: RetrainParams


class SimulateParams(Section):
    shoppers: int = Field(ge=0)
    k: int = Field(gt=0)
    click_relevant: float = Field(ge=0, le=1)
    purchase_after_click: float = Field(ge=0, le=1)
    click_other: float = Field(ge=0, le=1)
    surge_category: str | None
    surge_click: float = Field(ge=0, le=1)
    new_products: int = Field(ge=0)
    clients: int = Field(gt=0)
    seed: int


class OPEParams(Section):
    mirror_folder: str
    campaigns: list[str] = Field(min_length=1)
    folds: int = Field(ge=2)
    bootstrap: int = Field(gt=0)
    alpha: float = Field(gt=0, lt=1)
    seed: int
    metrics_file: Path


class SegmentWeightsParams(Section):
    model: float = Field(ge=0)
    activity: float = Field(ge=0)
    recency: float = Field(ge=0)
    text: float = Field(ge=0)
    ratings: float = Field(ge=0)


class SegmentsParams(Section):
    k_candidates: tuple[int, ...] = Field(min_length=1)
    silhouette_sample: int = Field(ge=0)
    seed: int
    stability_seed: int
    n_init: int = Field(gt=0)
    model_dims: int = Field(gt=0)
    text_dims: int = Field(gt=0)
    weights: SegmentWeightsParams
    top_n: int = Field(gt=0)
    metrics_file: Path
    report_file: Path
    assignment_file: Path
    popularity_file: Path

    @model_validator(mode="after")
    def _k_at_least_two(self) -> "SegmentsParams":
        if min(self.k_candidates) < 2 or self.seed == self.stability_seed:
            raise ValueError("segments.k_candidates must all be >= 2 (a silhouette needs two segments) and "
                             "segments.stability_seed must differ from segments.seed")
        return self


class ABParams(Section):
    alpha: float = Field(gt=0, lt=1)
    power: float = Field(gt=0, lt=1)
    min_relative_effect: float = Field(gt=0)
    seed: int
    metrics_file: Path
    report_file: Path

    @model_validator(mode="after")
    def _power_above_alpha(self) -> "ABParams":
        if self.power <= self.alpha:
            raise ValueError("ab.power must be above ab.alpha: a test rejects with probability alpha when arms are equal")
        return self


class SentimentParams(Section):
    negative_max: float
    neutral_max: float
    test_fraction: float = Field(gt=0, lt=1)
    valid_fraction: float = Field(gt=0, lt=1)
    encoder: str
    target: Literal["stars", "labels"]
    trainable_layers: int = Field(ge=0)
    dropout: float = Field(ge=0, lt=1)
    max_tokens: int = Field(gt=0)
    head_tokens: int = Field(ge=0)
    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    lr: float = Field(gt=0)
    head_lr: float = Field(gt=0)
    eval_batch_size: int = Field(gt=0)
    tfidf_max_features: int = Field(gt=0)
    tfidf_c: float = Field(gt=0)
    bootstrap: int = Field(gt=0)
    alpha: float = Field(gt=0, lt=1)
    seed: int
    device: str
    bf16: bool
    model_file: Path
    metrics_file: Path

    @model_validator(mode="after")
    def _ordered(self) -> "SentimentParams":
        if self.neutral_max < self.negative_max:
            raise ValueError("neutral_max must be >= negative_max")
        if self.test_fraction + self.valid_fraction >= 1:
            raise ValueError("test_fraction + valid_fraction must leave shoppers to train on")
        if self.head_tokens >= self.max_tokens - 2:
            raise ValueError("head_tokens must leave room for the end of a long review within max_tokens")
        return self


class TopicsParams(Section):
    candidates: list[int] = Field(min_length=1)
    silhouette_sample: int = Field(gt=1)
    terms: int = Field(gt=0)
    min_df: int = Field(ge=1)
    batch_size: int = Field(gt=0)
    trend_period: str
    product_groups: int = Field(gt=0)
    snippets: int = Field(ge=0)
    snippet_chars: int = Field(gt=0)
    seed: int
    metrics_file: Path


class ReviewsParams(Section):
    dataset: str
    sample_users: int = Field(ge=0)
    report_file: Path
    sentiment: SentimentParams
    topics: TopicsParams


class PrivacyParams(Section):
    min_group_size: int = Field(ge=1)
    laplace_epsilon: float = Field(ge=0)
    erasure_dir: Path


class DemoParams(Section):
    dir: Path
    sample_users: int = Field(gt=0)
    shoppers: int = Field(gt=0)
    surge: str
    new_products: int = Field(ge=0)
    startup_seconds: float = Field(gt=0)


class ColdStartParams(Section):
    adapter_hidden: int = Field(gt=0)
    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=1)
    lr: float = Field(gt=0)
    holdout_fraction: float = Field(gt=0, lt=1)
    text_only_fraction: float = Field(gt=0, lt=1)
    profile_decay: float = Field(gt=0, le=1)
    match_lr: float = Field(gt=0)
    text_weights: tuple[float, ...] = Field(min_length=1)
    max_warm_drop: float = Field(ge=0, lt=1)
    exposure_scales: tuple[float, ...]
    offset_range: tuple[float, float]
    bisection_steps: int = Field(gt=0)
    final_bisection_steps: int = Field(gt=0)
    seed: int
    device: str
    history_k: tuple[int, ...]
    model_file: Path
    final_model_file: Path
    adapter_metrics_file: Path
    metrics_file: Path
    plot_file: Path


class ArmParams(Section):
    name: str = Field(min_length=1)
    share: float = Field(gt=0, le=1)
    tag: str | None = None      # a registered version; none = the production one (hot-swapped)
    policy: PolicyName | None = None   # none = serving.policy


class ServingParams(Section):
    top_k: int = Field(gt=0)
    default_pool: int = Field(gt=0)
    default_diversity: float = Field(ge=0, le=1)
    device: str
    added_items_dir: Path
    token_file: Path
    policy: PolicyName
    epsilon: float = Field(ge=0, le=1)
    temperature: float = Field(gt=0)
    explore_pool: int = Field(gt=0)
    thompson_prior_rate: float = Field(gt=0, lt=1)
    thompson_prior_shows: float = Field(gt=0)
    thompson_grid: int = Field(ge=16)
    feedback_counts_seconds: float = Field(ge=0)
    engaged_poll_seconds: float = Field(ge=0)
    personalisation: float = Field(ge=0, le=1)
    segment_prior: float = Field(gt=0)
    thin_history: int = Field(ge=0)
    session_ttl_seconds: float = Field(ge=0)
    arms: tuple[ArmParams, ...] = Field(min_length=1)
    swap_poll_seconds: float = Field(gt=0)
    store_url: str
    slate_flush_seconds: float = Field(gt=0)
    max_list: int = Field(gt=0)
    max_text: int = Field(gt=0)
    max_k: int = Field(gt=0)
    max_body_bytes: int = Field(gt=0)
    threads: int = Field(ge=1)
    blas_threads: int = Field(ge=1)
    batch_max: int = Field(ge=1)
    batch_wait_ms: float = Field(ge=0)
    shopper_tops: int = Field(ge=0)
    access_log: bool
    prometheus_metrics: bool
    port: int = Field(ge=1, le=65535)
    workers: int = Field(ge=1)
    cluster_dir: Path
    startup_seconds: float = Field(gt=0)
    launcher_look_seconds: float = Field(gt=0)
    worker_stop_seconds: float = Field(gt=0)
    worker_quick_end_seconds: float = Field(gt=0)

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> "ServingParams":
        total = sum(arm.share for arm in self.arms)
        if abs(total - 1) > 1e-9 or len({arm.name for arm in self.arms}) < len(self.arms):
            raise ValueError(f"serving.arms: shares must sum to 1 (they sum to {total:g}) and names must differ")
        return self


class Params(Section):
    data: DataParams
    ingest: IngestParams
    validation: ValidateParams = Field(alias="validate")  # `validate` would shadow BaseModel.validate
    split: SplitParams
    embed: EmbedParams
    model: ModelParams
    train: TrainParams
    coldstart: ColdStartParams
    registry: RegistryParams
    object_store: ObjectStoreParams
    airflow_cluster: AirflowClusterParams
    gate: GateParams
    monitor: MonitorParams
    simulate: SimulateParams
    demo: DemoParams
    ab: ABParams
    ope: OPEParams
    privacy: PrivacyParams
    reviews: ReviewsParams
    baselines: BaselinesParams
    fusion: FusionParams
    evaluate: EvaluateParams
    benchmark: BenchmarkParams
    serving: ServingParams
    segments: SegmentsParams

    root: Path = Path(".")

    def model_post_init(self, context: Any) -> None:
        self._name_sections()

    @model_validator(mode="after")
    def _filter_reads_last_position_only(self) -> "Params":
        if self.model.frequency_mix and not self.train.every_prefix:
            raise ValueError("model.frequency_mix > 0 needs train.every_prefix: true (the frequency filter sees "
                             "later positions, so only the last position of each prefix may be trained on)")
        return self

    def path(self, p: Path) -> Path:
        """Resolve a params path against the folder params.yaml lives in."""
        return p if p.is_absolute() else (self.root / p)
