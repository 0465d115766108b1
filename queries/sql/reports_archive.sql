-- params: month
-- The archive of generated monthly reports (report_archive, migration 018), newest month first,
-- then language, format and newest version first. $month NULL: every month.
SELECT month, lang, format, version, generated_at, trigger, path, bytes, sha256, charts
FROM report_archive
WHERE $month::VARCHAR IS NULL OR month = $month::VARCHAR
ORDER BY month DESC, lang, format, version DESC
