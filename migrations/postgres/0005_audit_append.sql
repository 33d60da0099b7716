-- The group commit in one statement (src/store/postgres/index.ts): takes the
-- write lock every write transaction takes first, reads the chain's head, links
-- the batch to it and inserts it, so the lock is held only while PostgreSQL
-- works — never across a round trip to a node — and a batch needs one round
-- trip whichever node wrote last.
--
-- The hash is the chain's (src/audit/chain.ts): SHA-256 over the previous hash
-- and the UTF-8 of the JSON array [seq, time, account, …, details]. The node
-- sends each event's array after its first element (`tail`, beginning with
-- the comma), so the text hashed is exactly the node's own encoding; only the
-- sequence number is written here, and the columns stored are read back from
-- that text. A node that built the batch on the head it wrote last sends its
-- hashes too (`expect_seq`, `expect_hash`, each event's `hash`): when that is
-- still the head, every hash computed here must equal the node's, or the batch
-- is refused whole — a difference between the two implementations cannot
-- enter the chain unnoticed. `lock_key` is the store's write lock
-- (WRITE_LOCK_KEY: one definition). `not_after`: a batch its node gave up on
-- (the database did not answer in time) must not be committed when it finally
-- arrives.
CREATE FUNCTION audit_append(batch text, expect_seq bigint, expect_hash bytea, lock_key bigint, not_after timestamptz)
  RETURNS TABLE (seq bigint, prev_hash bytea, hash bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  head_seq bigint;
  head_hash bytea;
  check_hashes boolean;
  seqs bigint[] := '{}';
  tails text[] := '{}';
  prevs bytea[] := '{}';
  hashes bytea[] := '{}';
  e jsonb;
BEGIN
  IF clock_timestamp() > not_after THEN
    RAISE EXCEPTION 'audit_append: the batch arrived after its node gave up on it (%)', not_after;
  END IF;
  PERFORM pg_advisory_xact_lock(lock_key);
  SELECT a.seq, a.hash INTO head_seq, head_hash FROM audit_events a ORDER BY a.seq DESC LIMIT 1;
  IF NOT FOUND THEN
    head_seq := 0;
    head_hash := decode(repeat('00', 32), 'hex');
  END IF;
  check_hashes := expect_seq IS NOT DISTINCT FROM head_seq AND expect_hash IS NOT DISTINCT FROM head_hash;
  FOR e IN SELECT x FROM jsonb_array_elements(batch::jsonb) WITH ORDINALITY AS t(x, n) ORDER BY n LOOP
    head_seq := head_seq + 1;
    seqs := seqs || head_seq;
    tails := tails || (e->>'tail');
    prevs := prevs || head_hash;
    head_hash := sha256(head_hash || convert_to('[' || head_seq::text || (e->>'tail'), 'UTF8'));
    IF check_hashes AND head_hash <> decode(e->>'hash', 'hex') THEN
      RAISE EXCEPTION 'audit_append: event % hashes differently here than on the node', head_seq;
    END IF;
    hashes := hashes || head_hash;
  END LOOP;
  -- The columns are read back from the text just hashed: what is stored is what the hash covers.
  INSERT INTO audit_events (seq, time, account, action, operation, result, role_id, resource_id, version,
      client_ip, request_id, user_agent, reason, message, details, prev_hash, hash)
    SELECT h.seq, a->>1, a->>2, a->>3, a->>4, a->>5, a->>6, a->>7, (a->>8)::bigint, a->>9, a->>10, a->>11, a->>12,
      a->>13, a->>14, h.prev_hash, h.hash
    FROM unnest(seqs, tails, prevs, hashes) AS h(seq, tail, prev_hash, hash),
      LATERAL (SELECT ('[0' || h.tail)::jsonb AS a) parsed
    ORDER BY h.seq;
  IF EXISTS (SELECT 1 FROM unnest(tails) AS t(tail) WHERE jsonb_array_length(('[0' || t.tail)::jsonb) <> 15) THEN
    RAISE EXCEPTION 'audit_append: an event is not the 15 fields of the chain''s encoding';
  END IF;
  RETURN QUERY SELECT * FROM unnest(seqs, prevs, hashes);
END
$$;
