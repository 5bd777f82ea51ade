//! The media contract end to end on both backends: an upload request, a
//! real presigned PUT (the local blob endpoint, or S3's checks in front of
//! moto), the bucket's object-created event on the media queue, the worker,
//! and what a client then reads and downloads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use constellation_core::OrgId;
use constellation_core::auth::Role;
use constellation_core::media::{MediaId, upload_key};
use constellation_media::sample;
use constellation_media::store::{MediaStore, Processed};
use constellation_testkit::http::{TestApp, TestPlatform};
use constellation_testkit::services::TestServices;
use http::StatusCode;
use serde_json::{Value, json};
use sha2::Digest as _;

constellation_testkit::on_both_backends! {
    app = crate::spawn;
    a_jpeg_with_gps_is_stripped_thumbnailed_and_downloadable,
    a_png_declared_as_pdf_is_rejected_and_its_bytes_deleted,
    a_body_of_another_length_is_refused_by_the_presigned_url,
    a_decompression_bomb_is_rejected_from_its_header,
    duplicate_and_late_events_change_nothing,
    concurrent_deliveries_of_one_upload_agree,
    a_delete_racing_the_worker_leaves_no_bytes,
    bad_upload_requests_name_the_field,
    tenancy_and_who_may_see_and_delete,
}

const ORG: &str = "org-media";

struct Media {
    services: TestServices,
    store: Arc<MediaStore>,
}

type MediaApp = TestApp<Media>;

async fn spawn(env: TestPlatform) -> MediaApp {
    let services = TestServices::start(&env, &[&constellation_media::SERVICE])
        .await
        .unwrap();
    let store = Arc::new(
        constellation_media::store(services.context("media"))
            .await
            .unwrap(),
    );
    let router = services.router();
    let member = services.tokens.token(ORG, Role::Member);
    TestApp::new(env, router, Media { services, store }).with_bearer(member)
}

fn token(app: &MediaApp, role: Role) -> String {
    app.service.services.tokens.token(ORG, role)
}

/// Asks for an upload and returns the answer.
async fn request_upload(app: &MediaApp, token: &str, body: Value) -> Value {
    let r = app
        .post("/v1/media/uploads")
        .bearer(token)
        .json(&body)
        .await;
    r.assert_status(StatusCode::CREATED);
    let v = r.json();
    assert_eq!(v["status"], "pending");
    assert_eq!(v["upload"]["method"], "PUT");
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/media/{}", v["id"].as_str().unwrap()).as_str())
    );
    v
}

/// PUTs `bytes` to a presigned upload as a browser would, sending the
/// headers it was told to send (the length is the body's own).
async fn put_bytes(upload: &Value, bytes: Vec<u8>) -> u16 {
    let mut req = reqwest::Client::new().put(upload["url"].as_str().unwrap());
    for (name, value) in upload["headers"].as_object().unwrap() {
        if name != "content-length" {
            req = req.header(name.as_str(), value.as_str().unwrap());
        }
    }
    req.body(bytes).send().await.unwrap().status().as_u16()
}

async fn fetch(url: &str) -> reqwest::Response {
    reqwest::get(url).await.unwrap()
}

async fn upload_file(
    app: &MediaApp,
    token: &str,
    purpose: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> String {
    let v = request_upload(
        app,
        token,
        json!({"purpose": purpose, "content_type": content_type, "size": bytes.len(), "filename": "file"}),
    )
    .await;
    assert_eq!(put_bytes(&v["upload"], bytes).await, 200);
    v["id"].as_str().unwrap().to_owned()
}

async fn a_jpeg_with_gps_is_stripped_thumbnailed_and_downloadable(app: MediaApp) {
    let photo = sample::jpeg_with_gps_exif(640, 480);
    assert!(sample::has_gps(&photo), "the fixture carries GPS");
    let member = token(&app, Role::Member);
    let v = request_upload(
        &app,
        &member,
        json!({"purpose": "receipt", "content_type": "image/jpeg", "size": photo.len(), "filename": "Beleg März.jpg"}),
    )
    .await;
    let id = v["id"].as_str().unwrap();
    assert_eq!(v["upload"]["headers"]["content-type"], "image/jpeg");
    let pending = app.get(&format!("/v1/media/{id}")).bearer(&member).await;
    pending.assert_status(StatusCode::OK);
    assert_eq!(pending.json()["status"], "pending");
    assert!(pending.json().get("download_url").is_none());

    assert_eq!(put_bytes(&v["upload"], photo.clone()).await, 200);
    assert!(
        app.service.services.pump().await.unwrap() >= 1,
        "the bucket's event reached the worker"
    );

    let ready = app.get(&format!("/v1/media/{id}")).bearer(&member).await;
    ready.assert_status(StatusCode::OK);
    let m = ready.json();
    assert_eq!(m["status"], "ready", "{m}");
    assert_eq!(
        (m["width"].as_u64(), m["height"].as_u64()),
        (Some(640), Some(480))
    );
    assert_eq!(m["thumbnail"]["content_type"], "image/jpeg");

    let download = fetch(m["download_url"].as_str().unwrap()).await;
    assert_eq!(download.status().as_u16(), 200);
    let disposition = download
        .headers()
        .get("content-disposition")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert!(
        disposition.contains("filename*=UTF-8''Beleg%20M%C3%A4rz.jpg"),
        "{disposition}"
    );
    let stored = download.bytes().await.unwrap().to_vec();
    assert!(!sample::has_gps(&stored), "GPS survived");
    assert!(!sample::has_exif(&stored), "EXIF survived");
    assert_eq!(
        m["sha256"].as_str().unwrap(),
        hex::encode(sha2::Sha256::digest(&stored))
    );

    let thumb = fetch(m["thumbnail_url"].as_str().unwrap()).await;
    assert_eq!(thumb.status().as_u16(), 200);
    let thumb = thumb.bytes().await.unwrap();
    assert_eq!(&thumb[..3], [0xFF, 0xD8, 0xFF], "a JPEG thumbnail");
    assert_eq!(m["thumbnail"]["size"].as_u64(), Some(thumb.len() as u64));

    let org = OrgId::parse(ORG).unwrap();
    let key = upload_key(&org, &MediaId::parse(id).unwrap());
    assert!(
        app.service
            .store
            .blobs()
            .head(&key)
            .await
            .unwrap()
            .is_none(),
        "the upload is gone"
    );
}

async fn a_png_declared_as_pdf_is_rejected_and_its_bytes_deleted(app: MediaApp) {
    let member = token(&app, Role::Member);
    let id = upload_file(
        &app,
        &member,
        "attachment",
        "application/pdf",
        sample::png(32, 32),
    )
    .await;
    app.service.services.pump().await.unwrap();
    let m = app
        .get(&format!("/v1/media/{id}"))
        .bearer(&member)
        .await
        .json();
    assert_eq!(m["status"], "rejected");
    assert_eq!(m["reason"], "type-mismatch");
    assert!(m.get("download_url").is_none());
    let key = upload_key(&OrgId::parse(ORG).unwrap(), &MediaId::parse(&id).unwrap());
    assert!(
        app.service
            .store
            .blobs()
            .head(&key)
            .await
            .unwrap()
            .is_none()
    );

    let pdf = upload_file(
        &app,
        &member,
        "attachment",
        "application/pdf",
        sample::pdf(),
    )
    .await;
    app.service.services.pump().await.unwrap();
    let m = app
        .get(&format!("/v1/media/{pdf}"))
        .bearer(&member)
        .await
        .json();
    assert_eq!(m["status"], "ready", "{m}");
    assert!(m.get("thumbnail").is_none() && m.get("width").is_none());
    let download = fetch(m["download_url"].as_str().unwrap()).await;
    let disposition = download.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.ends_with("filename*=UTF-8''file.pdf"),
        "saved with the checked type's extension: {disposition}"
    );
}

async fn a_body_of_another_length_is_refused_by_the_presigned_url(app: MediaApp) {
    let member = token(&app, Role::Member);
    let photo = sample::jpeg(64, 64);
    let v = request_upload(
        &app,
        &member,
        json!({"purpose": "avatar", "content_type": "image/jpeg", "size": photo.len(), "filename": "me.jpg"}),
    )
    .await;
    let mut longer = photo.clone();
    longer.push(0);
    assert_eq!(put_bytes(&v["upload"], longer).await, 403);
    assert_eq!(
        put_bytes(&v["upload"], photo[..photo.len() - 1].to_vec()).await,
        403
    );
    // Another type than the signed one.
    let status = reqwest::Client::new()
        .put(v["upload"]["url"].as_str().unwrap())
        .header("content-type", "image/png")
        .body(photo.clone())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 403);
    // (S3 sends a test event when a notification is configured; nothing else comes.)
    app.service.services.pump().await.unwrap();
    let id = MediaId::parse(v["id"].as_str().unwrap()).unwrap();
    let key = upload_key(&OrgId::parse(ORG).unwrap(), &id);
    assert!(
        app.service
            .store
            .blobs()
            .head(&key)
            .await
            .unwrap()
            .is_none(),
        "nothing was stored"
    );
    let m = app
        .get(&format!("/v1/media/{id}"))
        .bearer(&member)
        .await
        .json();
    assert_eq!(m["status"], "pending");
}

async fn a_decompression_bomb_is_rejected_from_its_header(app: MediaApp) {
    let member = token(&app, Role::Member);
    let id = upload_file(
        &app,
        &member,
        "attachment",
        "image/png",
        sample::png_header_only(10_000, 5_000),
    )
    .await;
    app.service.services.pump().await.unwrap();
    let m = app
        .get(&format!("/v1/media/{id}"))
        .bearer(&member)
        .await
        .json();
    assert_eq!(
        (m["status"].as_str(), m["reason"].as_str()),
        (Some("rejected"), Some("too-many-pixels"))
    );
}

async fn duplicate_and_late_events_change_nothing(app: MediaApp) {
    let member = token(&app, Role::Member);
    let photo = sample::jpeg(80, 60);
    let v = request_upload(
        &app,
        &member,
        json!({"purpose": "attachment", "content_type": "image/jpeg", "size": photo.len(), "filename": "a.jpg"}),
    )
    .await;
    let id = v["id"].as_str().unwrap();
    assert_eq!(put_bytes(&v["upload"], photo.clone()).await, 200);
    app.service.services.pump().await.unwrap();
    let first = app
        .get(&format!("/v1/media/{id}"))
        .bearer(&member)
        .await
        .json();
    assert_eq!(first["status"], "ready");

    // The same URL used again within its 15 minutes, with other bytes of
    // the same length: a late event for a media that is already checked.
    let mut other = photo.clone();
    let last = other.len() - 3;
    other[last] ^= 0x55;
    assert_eq!(put_bytes(&v["upload"], other).await, 200);
    app.service.services.pump().await.unwrap();
    // And a duplicate delivery of the first event, straight to the store.
    let org = OrgId::parse(ORG).unwrap();
    let media_id = MediaId::parse(id).unwrap();
    assert_eq!(
        app.service
            .store
            .process_upload(&org, &media_id)
            .await
            .unwrap(),
        Processed::Unchanged
    );

    let after = app
        .get(&format!("/v1/media/{id}"))
        .bearer(&member)
        .await
        .json();
    assert_eq!(after["status"], "ready");
    assert_eq!(after["sha256"], first["sha256"]);
    assert_eq!(after["updated_at"], first["updated_at"]);
    assert!(
        app.service
            .store
            .blobs()
            .head(&upload_key(&org, &media_id))
            .await
            .unwrap()
            .is_none()
    );
}

async fn concurrent_deliveries_of_one_upload_agree(app: MediaApp) {
    let member = token(&app, Role::Member);
    let photo = sample::jpeg(120, 90);
    let v = request_upload(
        &app,
        &member,
        json!({"purpose": "attachment", "content_type": "image/jpeg", "size": photo.len(), "filename": "a.jpg"}),
    )
    .await;
    let id = MediaId::parse(v["id"].as_str().unwrap()).unwrap();
    assert_eq!(put_bytes(&v["upload"], photo).await, 200);
    let org = OrgId::parse(ORG).unwrap();
    let store = app.service.store.clone();
    let runs = futures::future::join_all((0..4).map(|_| {
        let (store, org, id) = (store.clone(), org.clone(), id.clone());
        tokio::spawn(async move { store.process_upload(&org, &id).await.unwrap() })
    }))
    .await;
    let outcomes: Vec<Processed> = runs.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == Processed::Ready).count(),
        1,
        "exactly one delivery makes it ready: {outcomes:?}"
    );
    let m = app
        .get(&format!("/v1/media/{id}"))
        .bearer(&member)
        .await
        .json();
    assert_eq!(m["status"], "ready");
    let stored = fetch(m["download_url"].as_str().unwrap()).await;
    assert_eq!(
        stored.status().as_u16(),
        200,
        "the record names bytes that exist"
    );
    assert_eq!(
        hex::encode(sha2::Sha256::digest(stored.bytes().await.unwrap())),
        m["sha256"].as_str().unwrap()
    );
}

async fn a_delete_racing_the_worker_leaves_no_bytes(app: MediaApp) {
    let member = token(&app, Role::Member);
    for _ in 0..3 {
        let photo = sample::jpeg(200, 150);
        let checked =
            constellation_media::inspect::inspect("image/jpeg", photo.len() as u64, &photo)
                .unwrap();
        let v = request_upload(
            &app,
            &member,
            json!({"purpose": "attachment", "content_type": "image/jpeg", "size": photo.len(), "filename": "a.jpg"}),
        )
        .await;
        let id = MediaId::parse(v["id"].as_str().unwrap()).unwrap();
        assert_eq!(put_bytes(&v["upload"], photo).await, 200);
        let org = OrgId::parse(ORG).unwrap();
        let (processed, deleted) = tokio::join!(
            app.service.store.process_upload(&org, &id),
            app.delete(&format!("/v1/media/{id}"))
                .bearer(&member)
                .send()
        );
        processed.unwrap();
        assert!(
            matches!(
                deleted.status,
                StatusCode::NO_CONTENT | StatusCode::CONFLICT
            ),
            "{}",
            deleted.status
        );
        if deleted.status == StatusCode::CONFLICT {
            app.delete(&format!("/v1/media/{id}"))
                .bearer(&member)
                .await
                .assert_status(StatusCode::NO_CONTENT);
        }
        app.service.services.pump().await.unwrap();
        app.get(&format!("/v1/media/{id}"))
            .bearer(&member)
            .await
            .assert_status(StatusCode::NOT_FOUND);
        let blobs = app.service.store.blobs();
        assert!(blobs.head(&upload_key(&org, &id)).await.unwrap().is_none());
        for prefix in ["media", "thumbnails"] {
            // What the worker would have written for these bytes is not there.
            let key = format!("{prefix}/{ORG}/{id}/{}", &checked.sha256[..16]);
            assert!(
                blobs.head(&key).await.unwrap().is_none(),
                "{key} left behind"
            );
        }
    }
}

async fn bad_upload_requests_name_the_field(app: MediaApp) {
    let member = token(&app, Role::Member);
    let good =
        json!({"purpose": "receipt", "content_type": "image/png", "size": 10, "filename": "a.png"});
    for (field, value) in [
        ("purpose", json!("logo")),
        ("purpose", json!(1)),
        ("content_type", json!("image/gif")),
        ("content_type", json!("text/html")),
        ("size", json!(0)),
        ("size", json!(10 * 1024 * 1024 + 1)),
        ("size", json!(-1)),
        ("size", json!(1.5)),
        ("size", json!("10")),
        ("filename", json!("")),
        ("filename", json!("a\u{0}b")),
        ("filename", json!("x".repeat(256))),
    ] {
        let mut body = good.clone();
        body[field] = value.clone();
        let r = app
            .post("/v1/media/uploads")
            .bearer(&member)
            .json(&body)
            .await;
        r.assert_status(StatusCode::BAD_REQUEST);
        assert_eq!(r.field().as_deref(), Some(field), "{field} = {value}");
    }
    let mut whole = good.clone();
    whole["size"] = json!(10.0);
    app.post("/v1/media/uploads")
        .bearer(&member)
        .json(&whole)
        .await
        .assert_status(StatusCode::CREATED);
    let mut extra = good.clone();
    extra["key"] = json!("uploads/other-org/x");
    let r = app
        .post("/v1/media/uploads")
        .bearer(&member)
        .json(&extra)
        .await;
    r.assert_status(StatusCode::BAD_REQUEST);
    assert_eq!(r.field().as_deref(), Some("key"));
    app.post("/v1/media/uploads")
        .anonymous()
        .json(&good)
        .await
        .assert_unauthorized();
    app.get("/v1/media/not-an-id")
        .bearer(&member)
        .await
        .assert_status(StatusCode::BAD_REQUEST);
    app.get(&format!("/v1/media/{}", "0".repeat(32)))
        .bearer(&member)
        .await
        .assert_status(StatusCode::NOT_FOUND);
}

async fn tenancy_and_who_may_see_and_delete(app: MediaApp) {
    let uploader = token(&app, Role::Member);
    let colleague = token(&app, Role::Member);
    let admin = token(&app, Role::Admin);
    let outsider = app.service.services.tokens.token("org-other", Role::Owner);
    let receipt = upload_file(&app, &uploader, "receipt", "application/pdf", sample::pdf()).await;
    let attachment = upload_file(
        &app,
        &uploader,
        "attachment",
        "application/pdf",
        sample::pdf(),
    )
    .await;
    app.service.services.pump().await.unwrap();

    let path = |id: &str| format!("/v1/media/{id}");
    app.get(&path(&receipt))
        .bearer(&outsider)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    app.delete(&path(&receipt))
        .bearer(&outsider)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    app.get(&path(&receipt))
        .bearer(&colleague)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    app.get(&path(&receipt))
        .bearer(&admin)
        .await
        .assert_status(StatusCode::OK);
    app.get(&path(&attachment))
        .bearer(&colleague)
        .await
        .assert_status(StatusCode::OK);
    app.delete(&path(&attachment))
        .bearer(&colleague)
        .await
        .assert_status(StatusCode::FORBIDDEN);
    app.delete(&path(&attachment))
        .bearer(&uploader)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    app.get(&path(&attachment))
        .bearer(&uploader)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    app.delete(&path(&attachment))
        .bearer(&uploader)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    app.delete(&path(&receipt))
        .bearer(&admin)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    // The deletions were announced; the worker's queue does not get them back.
    app.service.services.pump().await.unwrap();
}
