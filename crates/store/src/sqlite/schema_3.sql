-- anchorage schema, version 3: a start request keeps its validated options,
-- typed (SessionOptions as JSON), next to the body as given. Rows of earlier
-- versions have none; the store derives them from the body when it reads one.
ALTER TABLE start_requests ADD COLUMN options TEXT;
