-- usersvc schema, version 4: each organization's count of active members, kept by triggers.
-- Counting on every read scanned all memberships of the organization (100,000 rows in a
-- seeded one), and every commit invalidates read caches, so busy servers counted constantly.

ALTER TABLE organizations ADD COLUMN member_count INTEGER NOT NULL DEFAULT 0;

UPDATE organizations SET member_count = (
    SELECT count(*) FROM memberships m JOIN users u ON u.id = m.user_id
    WHERE m.organization_id = organizations.id AND u.is_active = 1
);

-- Holds a row only inside a bulk-loading transaction (`usersvc seed`): new memberships are then
-- not counted one by one; the loader adds its total in the same transaction.
CREATE TABLE bulk_load (id INTEGER PRIMARY KEY CHECK (id = 1));

CREATE TRIGGER memberships_count_insert AFTER INSERT ON memberships
WHEN NOT EXISTS (SELECT 1 FROM bulk_load) BEGIN
    UPDATE organizations
    SET member_count = member_count
        + coalesce((SELECT is_active FROM users WHERE id = NEW.user_id), 0)
    WHERE id = NEW.organization_id;
END;

-- A user's own deletion is counted by users_count_delete below; by the time its memberships
-- cascade away, the user row is gone and counts 0 here.
CREATE TRIGGER memberships_count_delete AFTER DELETE ON memberships BEGIN
    UPDATE organizations
    SET member_count = member_count
        - coalesce((SELECT is_active FROM users WHERE id = OLD.user_id), 0)
    WHERE id = OLD.organization_id;
END;

CREATE TRIGGER users_count_delete BEFORE DELETE ON users WHEN OLD.is_active = 1 BEGIN
    UPDATE organizations SET member_count = member_count - 1
    WHERE id IN (SELECT organization_id FROM memberships WHERE user_id = OLD.id);
END;

CREATE TRIGGER users_count_active AFTER UPDATE OF is_active ON users
WHEN OLD.is_active IS NOT NEW.is_active BEGIN
    UPDATE organizations
    SET member_count = member_count + (CASE WHEN NEW.is_active = 1 THEN 1 ELSE -1 END)
    WHERE id IN (SELECT organization_id FROM memberships WHERE user_id = NEW.id);
END;
