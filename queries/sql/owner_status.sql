-- params: none
-- What every owner process last reported about itself (Store.put_status): one row per
-- owner and status name, the value a JSON object, newest first.
SELECT owner_site, owner_instance, name, value, updated_at
FROM owner_status
ORDER BY updated_at DESC, owner_site, owner_instance, name
