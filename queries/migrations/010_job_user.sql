-- 010: the user a Slurm job runs as (AMD device-metrics-exporter's job_user label), kept with
-- each sample beside its job id, so attribution rules can name users and reports can show them.
ALTER TABLE device_samples ADD COLUMN job_user VARCHAR;
