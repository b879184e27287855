-- CERNIQ Etapa 1 core schema: users, bronze / silver / gold layers, HITL approvals.
-- Every column used by the Etapa 1 runbook (sections 2, 3, 4.1, 6.1) exists here.
-- Idempotent: every object is created IF NOT EXISTS. Applied by cerniq.ops.cerniq_schema
-- inside one transaction, recorded in schema_migrations.

CREATE TABLE IF NOT EXISTS users (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid,
    name        text NOT NULL,
    email       text NOT NULL,
    role        text NOT NULL DEFAULT 'operator'
                CHECK (role IN ('operator', 'manager', 'admin', 'system')),
    manager_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    is_active   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email)
);
CREATE INDEX IF NOT EXISTS users_manager_id_idx ON users (manager_id);

CREATE TABLE IF NOT EXISTS bronze_import_batches (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id         uuid NOT NULL,
    source_type       text NOT NULL DEFAULT 'csv' CHECK (source_type IN ('csv', 'xlsx', 'api', 'manual')),
    file_name         text,
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
    progress_percent  numeric(5, 2) NOT NULL DEFAULT 0 CHECK (progress_percent BETWEEN 0 AND 100),
    total_rows        integer CHECK (total_rows >= 0),
    processed_rows    integer NOT NULL DEFAULT 0 CHECK (processed_rows >= 0),
    error_message     text,
    queue_name        text,
    job_ids           text[] NOT NULL DEFAULT '{}',
    started_at        timestamptz,
    completed_at      timestamptz,
    cancelled_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS bronze_import_batches_tenant_idx ON bronze_import_batches (tenant_id, created_at);
-- The stuck-import diagnosis (runbook 2.1) scans only batches in flight.
CREATE INDEX IF NOT EXISTS bronze_import_batches_processing_idx
    ON bronze_import_batches (started_at) WHERE status = 'processing';

CREATE TABLE IF NOT EXISTS bronze_contacts (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id          uuid NOT NULL,
    import_batch_id    uuid REFERENCES bronze_import_batches (id) ON DELETE SET NULL,
    source_type        text NOT NULL DEFAULT 'csv',
    row_number         integer,
    company_name       text,
    cui                text,
    email              text,
    phone              text,
    raw_data           jsonb NOT NULL DEFAULT '{}'::jsonb,
    processing_status  text NOT NULL DEFAULT 'pending'
                       CHECK (processing_status IN ('pending', 'processing', 'promoted', 'rejected', 'duplicate', 'error')),
    rejection_reason   text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    processed_at       timestamptz
);
CREATE INDEX IF NOT EXISTS bronze_contacts_tenant_idx ON bronze_contacts (tenant_id);
CREATE INDEX IF NOT EXISTS bronze_contacts_import_batch_idx ON bronze_contacts (import_batch_id, created_at);
CREATE INDEX IF NOT EXISTS bronze_contacts_created_at_idx ON bronze_contacts (created_at);
-- Daily cleanup (runbook 3.1): promoted rows older than 30 days.
CREATE INDEX IF NOT EXISTS bronze_contacts_status_created_idx ON bronze_contacts (processing_status, created_at);

CREATE TABLE IF NOT EXISTS silver_companies (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id             uuid NOT NULL,
    -- No foreign key on purpose: bronze rows are purged after promotion; the weekly
    -- orphan check (runbook 3.2) reports silver rows whose source is gone.
    source_bronze_id      uuid,
    cui                   text,
    company_name          text,
    is_master_record      boolean NOT NULL DEFAULT true,
    master_record_id      uuid REFERENCES silver_companies (id) ON DELETE SET NULL,
    enrichment_status     text NOT NULL DEFAULT 'pending'
                          CHECK (enrichment_status IN ('pending', 'in_progress', 'partial', 'complete', 'failed')),
    promotion_status      text NOT NULL DEFAULT 'pending'
                          CHECK (promotion_status IN ('pending', 'eligible', 'promoted', 'blocked', 'rejected')),
    total_quality_score   numeric(5, 2) CHECK (total_quality_score BETWEEN 0 AND 100),
    completeness_score    numeric(5, 2) CHECK (completeness_score BETWEEN 0 AND 100),
    accuracy_score        numeric(5, 2) CHECK (accuracy_score BETWEEN 0 AND 100),
    freshness_score       numeric(5, 2) CHECK (freshness_score BETWEEN 0 AND 100),
    scored_at             timestamptz,
    scoring_requested_at  timestamptz,
    enriched_at           timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS silver_companies_tenant_master_idx ON silver_companies (tenant_id, is_master_record);
CREATE INDEX IF NOT EXISTS silver_companies_source_bronze_idx ON silver_companies (source_bronze_id);
CREATE INDEX IF NOT EXISTS silver_companies_created_at_idx ON silver_companies (created_at);
CREATE INDEX IF NOT EXISTS silver_companies_cui_idx ON silver_companies (tenant_id, cui);
-- Quality anomaly diagnosis (runbook 2.4): master records still without a score.
CREATE INDEX IF NOT EXISTS silver_companies_unscored_idx
    ON silver_companies (enrichment_status, promotion_status)
    WHERE total_quality_score IS NULL AND is_master_record;

CREATE TABLE IF NOT EXISTS silver_enrichment_log (
    id             bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id      uuid,
    company_id     uuid NOT NULL,
    source         text NOT NULL,
    operation      text,
    status         text NOT NULL
                   CHECK (status IN ('success', 'error', 'timeout', 'rate_limited', 'circuit_open', 'skipped')),
    error_type     text,
    error_message  text,
    http_status    integer,
    duration_ms    integer CHECK (duration_ms >= 0),
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS silver_enrichment_log_created_at_idx ON silver_enrichment_log (created_at);
CREATE INDEX IF NOT EXISTS silver_enrichment_log_company_idx ON silver_enrichment_log (company_id);
CREATE INDEX IF NOT EXISTS silver_enrichment_log_source_created_idx ON silver_enrichment_log (source, created_at);

-- Same columns as the log (runbook 3.1: INSERT INTO archive SELECT * FROM log). LIKE without
-- INCLUDING IDENTITY, so archived ids are kept as they were.
CREATE TABLE IF NOT EXISTS silver_enrichment_log_archive
    (LIKE silver_enrichment_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS);
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'silver_enrichment_log_archive'::regclass AND contype = 'p') THEN
        ALTER TABLE silver_enrichment_log_archive ADD PRIMARY KEY (id);
    END IF;
END
$$;
CREATE INDEX IF NOT EXISTS silver_enrichment_log_archive_created_at_idx ON silver_enrichment_log_archive (created_at);

CREATE TABLE IF NOT EXISTS gold_companies (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id          uuid NOT NULL,
    silver_company_id  uuid REFERENCES silver_companies (id) ON DELETE SET NULL,
    company_name       text,
    current_state      text NOT NULL DEFAULT 'new'
                       CHECK (current_state IN ('new', 'qualified', 'contacted', 'engaged', 'converted', 'disqualified')),
    lead_score         numeric(5, 2) CHECK (lead_score BETWEEN 0 AND 100),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS gold_companies_tenant_state_idx ON gold_companies (tenant_id, current_state);
CREATE INDEX IF NOT EXISTS gold_companies_silver_idx ON gold_companies (silver_company_id);
CREATE INDEX IF NOT EXISTS gold_companies_created_at_idx ON gold_companies (created_at);

CREATE TABLE IF NOT EXISTS approval_tasks (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id         uuid,
    approval_type     text NOT NULL,
    entity_type       text,
    entity_id         uuid,
    priority          text NOT NULL DEFAULT 'normal' CHECK (priority IN ('low', 'normal', 'high', 'critical')),
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'assigned', 'in_review', 'approved', 'rejected',
                                        'escalated', 'expired', 'cancelled')),
    assigned_to       uuid REFERENCES users (id) ON DELETE SET NULL,
    escalation_level  integer NOT NULL DEFAULT 0 CHECK (escalation_level >= 0),
    escalated_at      timestamptz,
    escalated_to      uuid REFERENCES users (id) ON DELETE SET NULL,
    due_at            timestamptz NOT NULL,
    decision          text CHECK (decision IN ('approve', 'reject')),
    decision_reason   text,
    decided_at        timestamptz,
    decided_by        text,
    metadata          jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS approval_tasks_status_due_idx ON approval_tasks (status, due_at);
CREATE INDEX IF NOT EXISTS approval_tasks_assigned_status_idx ON approval_tasks (assigned_to, status);
CREATE INDEX IF NOT EXISTS approval_tasks_created_at_idx ON approval_tasks (created_at);

-- Audit trail of escalations (runbook 2.3): one row per escalation actually sent.
CREATE TABLE IF NOT EXISTS approval_task_escalations (
    id            bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    task_id       uuid NOT NULL REFERENCES approval_tasks (id) ON DELETE CASCADE,
    level         integer NOT NULL,
    escalated_to  uuid REFERENCES users (id) ON DELETE SET NULL,
    reason        text NOT NULL,
    escalated_by  text NOT NULL,
    api_status    integer,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS approval_task_escalations_task_idx ON approval_task_escalations (task_id);
