-- Cross-node cache invalidation (issue 10, item 3). Every node caches some of
-- the database in memory: role closures and decisions (the graph), revoked
-- token ids and each role's "tokens not before" time, the keyring. When any
-- node, or a CLI command, changes one of them, every node must drop or update
-- its copy within a second.
--
-- Triggers on the tables themselves announce each change, so no writer can
-- forget to: they run in the writer's transaction, and PostgreSQL delivers a
-- NOTIFY only when that transaction commits (never for a rolled-back one or a
-- dry run). Each topic also has a generation number, bumped once per
-- transaction that changes it: a node that missed notifications (its
-- listening connection was down) sees the generation move on its next poll
-- and reloads that topic in full.
--
-- Payloads start with the topic and its generation after the change:
-- 'graph <gen>' and 'keyring <gen>' (reload); 'revoked <gen> <expires_at> <jti>'
-- and 'notbefore <gen> <ms> <role_id>' carry the row, so a node adds it
-- without reading anything back. A node remembers the highest generation it
-- was told about; the poll reloads a topic in full only when the table's
-- generation is higher (a notification was missed). Generations are bumped
-- under the row's lock, held to commit, so they grow in commit order.
CREATE TABLE change_generations (
  topic       TEXT COLLATE "C" PRIMARY KEY,
  generation  BIGINT NOT NULL
);
INSERT INTO change_generations (topic, generation) VALUES ('graph', 0), ('tokens', 0), ('keyring', 0);

-- Bumps `topic`'s generation at most once per transaction (a policy load
-- writing 20,000 rows bumps it once): a transaction-local setting remembers it.
CREATE FUNCTION coffer_bump_generation(topic TEXT) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
  g BIGINT;
BEGIN
  IF current_setting('coffer.bumped_' || topic, true) IS DISTINCT FROM 'yes' THEN
    UPDATE change_generations SET generation = generation + 1 WHERE change_generations.topic = coffer_bump_generation.topic;
    PERFORM set_config('coffer.bumped_' || topic, 'yes', true);
  END IF;
  SELECT generation INTO g FROM change_generations WHERE change_generations.topic = coffer_bump_generation.topic;
  RETURN g;
END
$$;

-- Identical payloads in one transaction are delivered once: a statement-level
-- 'graph' notice per statement costs nothing extra.
CREATE FUNCTION coffer_graph_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('coffer_changes', 'graph ' || coffer_bump_generation('graph'));
  RETURN NULL;
END
$$;
CREATE TRIGGER roles_changed AFTER INSERT OR UPDATE OR DELETE ON roles FOR EACH STATEMENT EXECUTE FUNCTION coffer_graph_changed();
CREATE TRIGGER resources_changed AFTER INSERT OR UPDATE OR DELETE ON resources FOR EACH STATEMENT EXECUTE FUNCTION coffer_graph_changed();
CREATE TRIGGER role_memberships_changed AFTER INSERT OR UPDATE OR DELETE ON role_memberships FOR EACH STATEMENT EXECUTE FUNCTION coffer_graph_changed();
CREATE TRIGGER permissions_changed AFTER INSERT OR UPDATE OR DELETE ON permissions FOR EACH STATEMENT EXECUTE FUNCTION coffer_graph_changed();
-- Annotations too: nodes cache the ones read on every request (a value's MIME type, a role's token TTL).
CREATE TRIGGER annotations_changed AFTER INSERT OR UPDATE OR DELETE ON annotations FOR EACH STATEMENT EXECUTE FUNCTION coffer_graph_changed();

CREATE FUNCTION coffer_token_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('coffer_changes', 'revoked ' || coffer_bump_generation('tokens') || ' ' || NEW.expires_at || ' ' || NEW.jti);
  RETURN NULL;
END
$$;
CREATE TRIGGER revoked_tokens_added AFTER INSERT ON revoked_tokens FOR EACH ROW EXECUTE FUNCTION coffer_token_revoked();

CREATE FUNCTION coffer_not_before_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' OR NEW.tokens_not_before IS DISTINCT FROM OLD.tokens_not_before THEN
    PERFORM pg_notify('coffer_changes', 'notbefore ' || coffer_bump_generation('tokens') || ' ' || NEW.tokens_not_before || ' ' || NEW.role_id);
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER credentials_not_before AFTER INSERT OR UPDATE ON credentials FOR EACH ROW EXECUTE FUNCTION coffer_not_before_changed();

CREATE FUNCTION coffer_keyring_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('coffer_changes', 'keyring ' || coffer_bump_generation('keyring'));
  RETURN NULL;
END
$$;
CREATE TRIGGER keyring_changed AFTER INSERT OR UPDATE OR DELETE ON keyring FOR EACH STATEMENT EXECUTE FUNCTION coffer_keyring_changed();
