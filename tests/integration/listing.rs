//! `GET /api/users/` (SPEC §3.5, §10.2, §10.4; reference §5.1): visibility, filters, ordering
//! and limit/offset pagination with exact `next`/`previous` URLs.

use serde_json::{Value, json};

use crate::harness::TestServer;
use crate::support::*;

fn list(srv: &TestServer, key: &str, query: &str) -> Value {
    ok_json(&srv.get(&format!("/api/users/{query}"), key))
}

fn emails(page: &Value) -> Vec<String> {
    page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap().to_owned())
        .collect()
}

/// A staff caller and five non-staff users `user1@…` … `user5@…`; returns the staff key.
fn six_users(srv: &TestServer) -> String {
    let staff = srv.user("admin@example.com", true);
    for i in 1..=5 {
        srv.user(&format!("user{i}@example.com"), false);
    }
    srv.key(&staff, &["user:read"])
}

fn base(srv: &TestServer) -> String {
    format!("http://{}/api/users/", srv.addr)
}

#[test]
fn the_envelope_has_count_next_previous_results() {
    let srv = TestServer::start();
    let key = six_users(&srv);
    let page = list(&srv, &key, "");
    assert_keys(&page, &["count", "next", "previous", "results"]);
    assert_eq!(page["count"], json!(6));
    assert_eq!(page["next"], json!(null));
    assert_eq!(page["previous"], json!(null));
    for user in page["results"].as_array().unwrap() {
        assert_keys(user, &readable_user_fields());
    }
}

#[test]
fn non_staff_sees_only_itself() {
    let srv = TestServer::start();
    six_users(&srv);
    let me_row = srv.user("me@example.com", false);
    let key = srv.key(&me_row, &["user:read"]);
    let page = list(&srv, &key, "");
    assert_eq!(page["count"], json!(1));
    assert_eq!(emails(&page), ["me@example.com"]);
    assert_eq!(page["results"][0]["id"], json!(me_row.id));
    assert_eq!(page["next"], json!(null));
    assert_eq!(page["previous"], json!(null));
    // Filtering by another user's email finds nothing; by its own, itself.
    let page = list(&srv, &key, "?email=user1@example.com");
    assert_eq!(page["count"], json!(0));
    assert_eq!(page["results"], json!([]));
    assert_eq!(list(&srv, &key, "?email=me@example.com")["count"], json!(1));
    assert_eq!(list(&srv, &key, "?is_staff=true")["count"], json!(0));
}

#[test]
fn staff_sees_all_active_users_ordered_by_id() {
    let srv = TestServer::start();
    let staff = srv.user("admin@example.com", true);
    let mut ids = vec![staff.id];
    let mut rows = Vec::new();
    for i in 1..=4 {
        let u = srv.user(&format!("user{i}@example.com"), false);
        ids.push(u.id);
        rows.push(u);
    }
    srv.set_active(&rows[1], false);
    ids.retain(|id| *id != rows[1].id);
    let key = srv.key(&staff, &["user:read"]);
    let page = list(&srv, &key, "");
    assert_eq!(page["count"], json!(4));
    let got: Vec<i64> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, ids);
    assert!(!emails(&page).contains(&"user2@example.com".to_owned()));
}

#[test]
fn staff_filter_by_email_finds_that_user() {
    let srv = TestServer::start();
    let key = six_users(&srv);
    let target = srv.user("target@example.com", false);
    let page = list(&srv, &key, "?email=target@example.com");
    assert_eq!(page["count"], json!(1));
    assert_eq!(page["results"][0]["email"], json!("target@example.com"));
    assert_eq!(page["results"][0]["id"], json!(target.id));
}

#[test]
fn email_filter_is_exact_but_case_insensitive() {
    let srv = TestServer::start();
    let key = six_users(&srv);
    srv.user("Carol@Example.com", false);
    let page = list(&srv, &key, "?email=carol@example.com");
    assert_eq!(emails(&page), ["Carol@Example.com"]);
    assert_eq!(
        emails(&list(&srv, &key, "?email=CAROL@EXAMPLE.COM")),
        ["Carol@Example.com"]
    );
    assert_eq!(
        emails(&list(&srv, &key, "?email=USER3@example.com")),
        ["user3@example.com"]
    );
    // Exact: no substring or prefix matching.
    assert_eq!(list(&srv, &key, "?email=carol")["count"], json!(0));
    assert_eq!(
        list(&srv, &key, "?email=user1@example.co")["count"],
        json!(0)
    );
    assert_eq!(list(&srv, &key, "?email=%25")["count"], json!(0));
    // Percent-encoded form matches too.
    assert_eq!(
        emails(&list(&srv, &key, "?email=user2%40example.com")),
        ["user2@example.com"]
    );
}

#[test]
fn email_filter_excludes_deactivated_users() {
    let srv = TestServer::start();
    let key = six_users(&srv);
    let gone = srv.user("gone@example.com", false);
    srv.set_active(&gone, false);
    assert_eq!(
        list(&srv, &key, "?email=gone@example.com")["count"],
        json!(0)
    );
}

#[test]
fn empty_email_parameter_applies_no_filter() {
    let srv = TestServer::start();
    let key = six_users(&srv);
    assert_eq!(list(&srv, &key, "?email=")["count"], json!(6));
    assert_eq!(list(&srv, &key, "?email")["count"], json!(6));
}

#[test]
fn is_staff_filter_accepts_true_1_false_0_and_ignores_garbage() {
    let srv = TestServer::start();
    let key = six_users(&srv);
    srv.user("staff2@example.com", true);
    for (q, expected) in [
        ("true", 2),
        ("True", 2),
        ("TRUE", 2),
        ("1", 2),
        ("false", 5),
        ("False", 5),
        ("0", 5),
        ("garbage", 7),
        ("yes", 7),
        ("", 7),
    ] {
        let page = list(&srv, &key, &format!("?is_staff={q}"));
        assert_eq!(page["count"], json!(expected), "is_staff={q}");
        assert_eq!(
            page["results"].as_array().unwrap().len(),
            expected,
            "is_staff={q}"
        );
    }
    let staff_only = list(&srv, &key, "?is_staff=1");
    assert_eq!(
        emails(&staff_only),
        ["admin@example.com", "staff2@example.com"]
    );
}

#[test]
fn unknown_query_parameters_are_ignored() {
    let srv = TestServer::start();
    let key = six_users(&srv);
    assert_eq!(list(&srv, &key, "?foo=bar&search=user1")["count"], json!(6));
}

#[test]
fn next_and_previous_follow_the_spec_example() {
    let srv = TestServer::start();
    let key = six_users(&srv);
    let b = base(&srv);
    let page = list(&srv, &key, "?offset=0&limit=2&is_staff=false");
    assert_eq!(page["count"], json!(5));
    assert_eq!(emails(&page), ["user1@example.com", "user2@example.com"]);
    assert_eq!(
        page["next"],
        json!(format!("{b}?is_staff=false&limit=2&offset=2"))
    );
    assert_eq!(page["previous"], json!(null));

    let page = list(&srv, &key, "?offset=2&limit=2&is_staff=false");
    assert_eq!(emails(&page), ["user3@example.com", "user4@example.com"]);
    assert_eq!(
        page["next"],
        json!(format!("{b}?is_staff=false&limit=2&offset=4"))
    );
    // offset − limit ≤ 0: `offset` is dropped.
    assert_eq!(
        page["previous"],
        json!(format!("{b}?is_staff=false&limit=2"))
    );

    let page = list(&srv, &key, "?offset=3&limit=2&is_staff=false");
    assert_eq!(emails(&page), ["user4@example.com", "user5@example.com"]);
    assert_eq!(page["next"], json!(null));
    assert_eq!(
        page["previous"],
        json!(format!("{b}?is_staff=false&limit=2&offset=1"))
    );

    let page = list(&srv, &key, "?offset=1&limit=2&is_staff=false");
    assert_eq!(
        page["previous"],
        json!(format!("{b}?is_staff=false&limit=2"))
    );
    assert_eq!(
        page["next"],
        json!(format!("{b}?is_staff=false&limit=2&offset=3"))
    );
}

#[test]
fn next_is_null_on_the_last_page() {
    let srv = TestServer::start();
    let key = six_users(&srv);
    let b = base(&srv);
    let page = list(&srv, &key, "?limit=2&offset=4");
    assert_eq!(emails(&page), ["user4@example.com", "user5@example.com"]);
    assert_eq!(page["next"], json!(null));
    assert_eq!(page["previous"], json!(format!("{b}?limit=2&offset=2")));
    let page = list(&srv, &key, "?limit=6");
    assert_eq!(page["next"], json!(null));
    assert_eq!(page["previous"], json!(null));
}

#[test]
fn offset_past_the_end_gives_empty_results_and_a_previous_link() {
    let srv = TestServer::start();
    let key = six_users(&srv);
    let b = base(&srv);
    let page = list(&srv, &key, "?limit=2&offset=10");
    assert_eq!(page["count"], json!(6));
    assert_eq!(page["results"], json!([]));
    assert_eq!(page["next"], json!(null));
    assert_eq!(page["previous"], json!(format!("{b}?limit=2&offset=8")));
    let page = list(&srv, &key, "?limit=2&offset=6");
    assert_eq!(page["results"], json!([]));
    assert_eq!(page["next"], json!(null));
    assert_eq!(page["previous"], json!(format!("{b}?limit=2&offset=4")));
}

#[test]
fn invalid_or_negative_offset_is_zero() {
    let srv = TestServer::start();
    let key = six_users(&srv);
    let b = base(&srv);
    for q in ["-3", "abc", "", "1.5", "99999999999999999999"] {
        let page = list(&srv, &key, &format!("?limit=2&offset={q}"));
        assert_eq!(
            emails(&page),
            ["admin@example.com", "user1@example.com"],
            "offset={q}"
        );
        assert_eq!(page["previous"], json!(null), "offset={q}");
        assert_eq!(
            page["next"],
            json!(format!("{b}?limit=2&offset=2")),
            "offset={q}"
        );
    }
}

#[test]
fn zero_negative_garbage_or_overflowing_limit_falls_back_to_100() {
    let srv = TestServer::start();
    let key = six_users(&srv);
    let b = base(&srv);
    for q in [
        "0",
        "-1",
        "-100",
        "abc",
        "",
        "1.5",
        "99999999999999999999",
        "1e3",
    ] {
        let page = list(&srv, &key, &format!("?limit={q}&offset=1"));
        assert_eq!(page["results"].as_array().unwrap().len(), 5, "limit={q}");
        assert_eq!(page["next"], json!(null), "limit={q}");
        assert_eq!(
            page["previous"],
            json!(format!("{b}?limit=100")),
            "limit={q}"
        );
    }
}

#[test]
fn limit_over_1000_is_clamped_to_1000_also_in_next() {
    let srv = TestServer::start();
    let staff = srv.user("admin@example.com", true);
    let key = srv.key(&staff, &["user:read"]);
    {
        let conn = db(&srv);
        conn.execute_batch("BEGIN").unwrap();
        let hash = usersvc::auth::password::unusable();
        for i in 0..1001 {
            let email = format!("bulk{i:04}@example.com");
            usersvc::db::users::insert(
                &conn,
                &usersvc::db::users::NewUser {
                    email: &email,
                    password_hash: &hash,
                    first_name: "",
                    last_name: "",
                    is_staff: false,
                },
                srv.clock.now(),
            )
            .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
    }
    let b = base(&srv);
    let page = list(&srv, &key, "?limit=5000");
    assert_eq!(page["count"], json!(1002));
    assert_eq!(page["results"].as_array().unwrap().len(), 1000);
    assert_eq!(page["next"], json!(format!("{b}?limit=1000&offset=1000")));
    assert_eq!(page["previous"], json!(null));

    let page = list(&srv, &key, "?limit=5000&offset=1000");
    assert_eq!(
        emails(&page),
        ["bulk0999@example.com", "bulk1000@example.com"]
    );
    assert_eq!(page["next"], json!(null));
    assert_eq!(page["previous"], json!(format!("{b}?limit=1000")));

    let page = list(&srv, &key, "?limit=1000&offset=1");
    assert_eq!(page["results"].as_array().unwrap().len(), 1000);
    assert_eq!(page["next"], json!(format!("{b}?limit=1000&offset=1001")));

    // The default page is 100.
    let page = list(&srv, &key, "");
    assert_eq!(page["results"].as_array().unwrap().len(), 100);
    assert_eq!(page["next"], json!(format!("{b}?limit=100&offset=100")));
}

#[test]
fn repeated_parameter_last_wins() {
    let srv = TestServer::start();
    let key = six_users(&srv);
    let b = base(&srv);
    let page = list(&srv, &key, "?limit=1&limit=2");
    assert_eq!(page["results"].as_array().unwrap().len(), 2);
    assert_eq!(page["next"], json!(format!("{b}?limit=2&offset=2")));
    let page = list(
        &srv,
        &key,
        "?email=user1@example.com&email=user2@example.com",
    );
    assert_eq!(emails(&page), ["user2@example.com"]);
    let page = list(&srv, &key, "?offset=4&limit=2&offset=2");
    assert_eq!(emails(&page), ["user2@example.com", "user3@example.com"]);
}

#[test]
fn links_keep_every_parameter_sorted_by_name_and_form_encoded() {
    let srv = TestServer::start();
    let key = six_users(&srv);
    let b = base(&srv);
    let page = list(
        &srv,
        &key,
        "?zeta=z&email=user1@example.com&alpha=a%20b&offset=3&limit=1",
    );
    assert_eq!(page["count"], json!(1));
    assert_eq!(page["results"], json!([]));
    assert_eq!(page["next"], json!(null));
    assert_eq!(
        page["previous"],
        json!(format!(
            "{b}?alpha=a+b&email=user1%40example.com&limit=1&offset=2&zeta=z"
        ))
    );
}

#[test]
fn links_use_the_host_header_and_the_path_as_received() {
    let srv = TestServer::start();
    let key = six_users(&srv);
    let request = format!(
        "GET /api/users?limit=2 HTTP/1.1\r\nHost: api.example.com:8443\r\nConnection: close\r\n\
         Authorization: Bearer {key}\r\n\r\n"
    );
    let page = ok_json(&srv.raw(request.as_bytes()));
    assert_eq!(
        page["next"],
        json!("http://api.example.com:8443/api/users?limit=2&offset=2")
    );
    let page = list(&srv, &key, "?limit=2&offset=2");
    assert_eq!(
        page["previous"],
        json!(format!("http://{}/api/users/?limit=2", srv.addr))
    );
}

#[test]
fn site_url_is_the_base_of_links_when_configured() {
    let srv = TestServer::start_with(|c| c.site_url = Some("https://users.example.com".to_owned()));
    let key = six_users(&srv);
    let page = list(&srv, &key, "?limit=2");
    assert_eq!(
        page["next"],
        json!("https://users.example.com/api/users/?limit=2&offset=2")
    );
}

#[test]
fn non_staff_pagination_counts_only_itself() {
    let srv = TestServer::start();
    six_users(&srv);
    let u = srv.user("me@example.com", false);
    let key = srv.key(&u, &["user:read"]);
    let page = list(&srv, &key, "?offset=1");
    assert_eq!(page["count"], json!(1));
    assert_eq!(page["results"], json!([]));
    assert_eq!(page["next"], json!(null));
    assert_eq!(page["previous"], json!(format!("{}?limit=100", base(&srv))));
}
