//! Personal API keys at rest and in use (SPEC §3.2, §5): `last_used_at` bookkeeping and no
//! plaintext key in the database file or its WAL.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::harness::TestServer;
use crate::support::*;

fn last_used_at(srv: &TestServer, key_id: &str) -> Option<i64> {
    db(srv)
        .query_row(
            "SELECT last_used_at FROM personal_api_keys WHERE id = ?1",
            [key_id],
            |r| r.get(0),
        )
        .expect("key row")
}

#[test]
fn last_used_at_becomes_non_null_after_a_use() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let (id, key) = srv.key_with_id(&user, &["user:read"]);
    assert_eq!(last_used_at(&srv, &id), None);
    let before = srv.clock.now();
    assert_eq!(srv.get("/api/users/@me/", &key).status, 200);
    let used = poll(|| last_used_at(&srv, &id)).expect("last_used_at still NULL after 2 s");
    assert!(
        used >= before && used <= srv.clock.now(),
        "{used} not in [{before}, now]"
    );
}

#[test]
fn a_second_use_within_the_hour_does_not_change_last_used_at() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let (id, key) = srv.key_with_id(&user, &["*"]);
    srv.get("/api/users/@me/", &key);
    let first = poll(|| last_used_at(&srv, &id)).expect("last_used_at still NULL after 2 s");
    srv.clock.advance(60);
    assert_eq!(srv.get("/api/users/", &key).status, 200);
    // A write goes through the same single writer after any bookkeeping the GET queued.
    assert_eq!(
        srv.patch("/api/users/@me/", &key, json!({"first_name": "A"}))
            .status,
        200
    );
    srv.clock.advance(3_000);
    assert_eq!(srv.get("/api/users/@me/", &key).status, 200);
    assert_eq!(
        srv.patch("/api/users/@me/", &key, json!({"first_name": "B"}))
            .status,
        200
    );
    assert_eq!(last_used_at(&srv, &id), Some(first));
}

#[test]
fn a_use_more_than_an_hour_later_updates_last_used_at() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let (id, key) = srv.key_with_id(&user, &["user:read"]);
    srv.get("/api/users/@me/", &key);
    let first = poll(|| last_used_at(&srv, &id)).expect("last_used_at still NULL after 2 s");
    srv.clock.advance(3_601);
    srv.get("/api/users/@me/", &key);
    let second = poll(|| last_used_at(&srv, &id).filter(|t| *t != first))
        .expect("not updated after an hour");
    assert!(second >= first + 3_600_000_000, "{first} -> {second}");
}

#[test]
fn only_the_used_key_is_touched() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let (used_id, used) = srv.key_with_id(&user, &["user:read"]);
    let (idle_id, _) = srv.key_with_id(&user, &["user:read"]);
    srv.get("/api/users/@me/", &used);
    poll(|| last_used_at(&srv, &used_id)).expect("last_used_at still NULL after 2 s");
    assert_eq!(last_used_at(&srv, &idle_id), None);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_issued_key_appears_in_plaintext_in_the_database_or_its_wal() {
    let srv = TestServer::start();
    let staff = srv.user("admin@example.com", true);
    let user = srv.user("alice@example.com", false);
    let mut keys = vec![
        srv.key_with_id(&staff, &["*"]),
        srv.key_with_id(&user, &["user:read"]),
        srv.key_with_id(&user, &["user:write"]),
    ];
    let (revoked_id, revoked) = srv.key_with_id(&user, &["*"]);
    for (_, key) in &keys {
        assert_eq!(srv.get("/api/users/@me/", key).status, 200);
        srv.patch("/api/users/@me/", key, json!({"first_name": "x"}));
        srv.get("/api/users/", key);
    }
    assert_eq!(srv.get("/api/users/@me/", &revoked).status, 200);
    for (id, _) in &keys {
        poll(|| last_used_at(&srv, id)).expect("last_used_at still NULL after 2 s");
    }
    srv.revoke(&revoked_id);
    assert_bad_key(&srv.get("/api/users/@me/", &revoked));
    let unknown = unknown_key();
    assert_bad_key(&srv.get("/api/users/@me/", &unknown));
    keys.push((revoked_id, revoked));

    let main = std::fs::read(&srv.db_path).expect("read database");
    let wal_path = srv.db_path.with_file_name("usersvc.sqlite3-wal");
    let wal = std::fs::read(&wal_path).unwrap_or_default();
    let files = [("database", &main), ("wal", &wal)];
    for (_, key) in keys
        .iter()
        .chain(std::iter::once(&(String::new(), unknown)))
    {
        let body = key.strip_prefix("phx_").expect("phx_ prefix");
        assert_eq!(body.len(), 43);
        for (name, bytes) in files {
            assert!(
                !contains(bytes, key.as_bytes()),
                "key in plaintext in the {name}"
            );
            assert!(
                !contains(bytes, body.as_bytes()),
                "key body in plaintext in the {name}"
            );
        }
    }
    // The digests of the live keys are what is stored.
    for (_, key) in &keys[..3] {
        let digest = format!("sha256${}", hex::encode(Sha256::digest(key.as_bytes())));
        assert!(
            contains(&main, digest.as_bytes()) || contains(&wal, digest.as_bytes()),
            "digest {digest} not found in the database or its WAL"
        );
    }
}
