-- Snapshot of BullMQ queue counters kept in PostgreSQL for SQL dashboards
-- (runbook 2.4: SELECT queue_name, waiting, active, completed, failed FROM bullmq_queue_stats).
CREATE TABLE IF NOT EXISTS bullmq_queue_stats (
    queue_name  text PRIMARY KEY,
    waiting     bigint NOT NULL DEFAULT 0,
    active      bigint NOT NULL DEFAULT 0,
    delayed     bigint NOT NULL DEFAULT 0,
    completed   bigint NOT NULL DEFAULT 0,
    failed      bigint NOT NULL DEFAULT 0,
    paused      bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
