-- 0025: a replay shares its family's original payload and response instead of copying them.
-- For a replay: the seq of the exchange whose `payload` and `response` it uses (the family's
-- original); its own columns hold x''. NULL: the exchange's own columns hold them (every
-- exchange journalled before this migration, and every original).
-- Retention that deletes an exchange's payloads first copies them into the replays that share
-- them and are not deleted with it, so a replay never loses its payload early.
ALTER TABLE exchanges ADD COLUMN payload_seq INTEGER;
CREATE INDEX exchanges_payload_seq ON exchanges (payload_seq) WHERE payload_seq IS NOT NULL;
