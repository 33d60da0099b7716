-- audit_append (0005) parses each event's text once instead of fifteen times.
--
-- 0005 read the columns through `LATERAL (SELECT ('[0' || tail)::jsonb AS a)`.
-- PostgreSQL flattens that subquery and puts the expression in place of each
-- of the fourteen `a->>n`, so every event's JSON was parsed fourteen times for
-- its columns and once more for the field-count check (EXPLAIN VERBOSE shows
-- the cast repeated in the scan's output). Parsing was the largest part of a
-- group commit's database time: selecting the fourteen columns of a 31-event
-- batch took 1.07–1.52 ms against 0.43–0.48 ms parsed once (pgbench, same
-- hour; 0.16 ms of that is the statement itself).
--
-- Now the loop that hashes each event's text also parses it, checks it is the
-- chain's fifteen fields continuing its sequence number before anything is
-- inserted (the message names the event; 0005 let a tail of `.5,…` through,
-- hashed as `[seq.5,…` and stored as seq), and keeps the parsed array; the INSERT only reads fields from it.
-- What is stored is still read from the text just hashed. Same signature,
-- same answers (an event's refusal message now names it), so nodes of the
-- previous version keep working during a rolling upgrade. CREATE OR REPLACE
-- drops the function's settings, so 0007's `enable_seqscan = off` is given
-- again here.
CREATE OR REPLACE FUNCTION audit_append(batch text, expect_seq bigint, expect_hash bytea, lock_key bigint, not_after timestamptz)
  RETURNS TABLE (seq bigint, prev_hash bytea, hash bytea)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
#variable_conflict use_column
DECLARE
  head_seq bigint;
  head_hash bytea;
  check_hashes boolean;
  seqs bigint[] := '{}';
  fields jsonb[] := '{}';
  prevs bytea[] := '{}';
  hashes bytea[] := '{}';
  e jsonb;
  tail text;
  parsed jsonb;
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
    tail := e->>'tail';
    parsed := ('[0' || tail)::jsonb;
    -- The text must continue `[seq` (a tail of `.5,…` would hash as [seq.5,…] and be stored as seq).
    IF left(tail, 1) IS DISTINCT FROM ',' OR jsonb_array_length(parsed) IS DISTINCT FROM 15 THEN
      RAISE EXCEPTION 'audit_append: event % is not the 15 fields of the chain''s encoding after its seq', head_seq;
    END IF;
    seqs := seqs || head_seq;
    fields := array_append(fields, parsed);
    prevs := prevs || head_hash;
    head_hash := sha256(head_hash || convert_to('[' || head_seq::text || tail, 'UTF8'));
    IF check_hashes AND head_hash <> decode(e->>'hash', 'hex') THEN
      RAISE EXCEPTION 'audit_append: event % hashes differently here than on the node', head_seq;
    END IF;
    hashes := hashes || head_hash;
  END LOOP;
  INSERT INTO audit_events (seq, time, account, action, operation, result, role_id, resource_id, version,
      client_ip, request_id, user_agent, reason, message, details, prev_hash, hash)
    SELECT h.seq, a->>1, a->>2, a->>3, a->>4, a->>5, a->>6, a->>7, (a->>8)::bigint, a->>9, a->>10, a->>11, a->>12,
      a->>13, a->>14, h.prev_hash, h.hash
    FROM unnest(seqs, fields, prevs, hashes) AS h(seq, a, prev_hash, hash)
    ORDER BY h.seq;
  RETURN QUERY SELECT * FROM unnest(seqs, prevs, hashes);
END
$$;
