//! Identifiers as they arrive from people and other systems: typed in full width, given for the
//! wrong member of a family, or disagreeing with the person they would join. None of them may
//! make a second person of one, or one person of two.

use serde_json::{Value, json};

use crate::helpers::spawn_app;
use crate::patients::{count_rows, persons_named, register, rid, table_rows};

/// A Chinese input method left in full-width mode: the resident ID, phone and birth date read as
/// their ASCII forms, so the record is the same person as one typed in half width (and search
/// finds it by the phone typed in half width), instead of a 422 or a second person.
#[tokio::test]
async fn identifiers_typed_in_full_width_are_the_same_identifiers() {
    let app = spawn_app().await;
    app.load_demo().await;
    let x = app.login("village.doctor").await;
    let y = app.login("township.doctor").await;
    let id = rid("130999", "19620318", 415);
    let wide: String = id
        .chars()
        .map(|c| if c.is_ascii_digit() { char::from_u32(c as u32 - '0' as u32 + '０' as u32).unwrap() } else { 'Ｘ' })
        .collect();
    let first = register(
        &app,
        &x,
        json!({"name": "郑秀芬", "resident_id": wide, "phone": "１３９ １２３４ ５６７０", "birth_date": "１９６２－０３－１８"}),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.body["person"]["resident_id"], id.as_str());
    assert_eq!(first.body["person"]["birth_date"], "1962-03-18");
    let person = first.body["person"]["id"].as_str().unwrap().to_string();

    let second = register(&app, &y, json!({"name": "郑秀芬", "resident_id": id})).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.body["person"]["id"], person.as_str(), "linked on the same ID");
    let found = app.post("/api/v1/patients/search", &x.token, json!({"phone": "13912345670"})).await;
    assert_eq!(found.status, 200, "{}", found.text);
    assert!(found.text.contains(&person), "found by the phone typed in half width: {}", found.text);
    assert_eq!(persons_named(&app, "郑秀芬").await, 1);
}

/// A child brought to another clinic with a sibling's resident ID (the parents gave the wrong
/// one): the same ID under another given name is asked about, never linked. Created new on
/// purpose, the child is a person of their own; the ID stays the sibling's and is held on the
/// child's registration, so the sibling's next record still links to the sibling.
#[tokio::test]
async fn a_childs_record_with_a_siblings_id_is_asked_about_not_linked() {
    let app = spawn_app().await;
    app.load_demo().await;
    let village = app.login("village.doctor").await;
    let township = app.login("township.doctor").await;
    let year = chrono::Datelike::year(&chrono::Utc::now()) - 2;
    let siblings_id = rid("130999", &format!("{year}0105"), 113);
    let details = json!({"phone": "13977778888", "address_division": "130999101201"});
    let with = |name: &str| {
        let mut body = details.clone();
        body["name"] = json!(name);
        body["resident_id"] = json!(siblings_id);
        body
    };
    let sibling = register(&app, &village, with("张子豪")).await;
    assert_eq!(sibling.status, 201, "{}", sibling.text);
    let sibling_id = sibling.body["person"]["id"].as_str().unwrap().to_string();

    let asked = register(&app, &township, with("张子涵")).await;
    assert_eq!((asked.status.as_u16(), asked.code()), (409, "probable_match"), "{}", asked.text);
    assert_eq!(asked.body["details"]["candidates"][0]["person"]["id"], sibling_id.as_str());

    let mut create = with("张子涵");
    create["create_new"] = json!({"reason": "家长给错了身份证号，是另一个孩子"});
    let child = register(&app, &township, create).await;
    assert_eq!(child.status, 201, "{}", child.text);
    let child_id = child.body["person"]["id"].as_str().unwrap().to_string();
    assert_ne!(child_id, sibling_id);
    assert_eq!(child.body["person"]["resident_id"], Value::Null, "the ID stays the sibling's: {}", child.text);
    // Nor does the child take the sibling's sex and birth date, which came from that ID only.
    assert_eq!((&child.body["person"]["sex"], &child.body["person"]["birth_date"]), (&Value::Null, &Value::Null));
    assert_eq!(child.body["data_quality"], json!(["sex_missing", "birth_date_missing"]));
    assert_eq!(
        count_rows(&app, "SELECT count(*) AS n FROM registrations WHERE held_resident_id_enc IS NOT NULL").await,
        1,
        "held on the child's registration"
    );

    let again = register(&app, &township, with("张子豪")).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["person"]["id"], sibling_id.as_str(), "the ID still leads to its holder");
}

/// A record that links for certain to a person without a resident ID, carrying an ID that fits
/// that person (here: her birth date is a year only) but that another person already has. The
/// person does not take it (one active person per ID): it is held on the registration, and the
/// registration is not refused. Before, the unique index answered 409 `conflict` to the record
/// and to its `create_new`, so it could not be registered at all.
#[tokio::test]
async fn a_linked_record_whose_id_another_person_has_is_registered_and_the_id_held() {
    let app = spawn_app().await;
    app.load_demo().await;
    let village = app.login("village.doctor").await;
    let township = app.login("township.doctor").await;
    let id = rid("130999", "19500307", 111);
    let holder = register(&app, &village, json!({"name": "张强", "resident_id": id})).await;
    assert_eq!(holder.status, 201, "{}", holder.text);
    let holder_id = holder.body["person"]["id"].as_str().unwrap().to_string();
    let details = json!({"name": "张伟", "phone": "13911112222", "address_division": "130999101201"});
    let mut first = details.clone();
    (first["sex"], first["birth_date"]) = (json!("male"), json!("1950"));
    let first = register(&app, &village, first).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let person = first.body["person"]["id"].as_str().unwrap().to_string();

    let mut with_id = details.clone();
    with_id["resident_id"] = json!(id);
    let linked = register(&app, &township, with_id).await;
    assert_eq!(linked.status, 200, "{}", linked.text);
    assert_eq!(linked.body["person"]["id"], person.as_str(), "{}", linked.text);
    assert_eq!(linked.body["person"]["resident_id"], Value::Null, "the ID stays its holder's: {}", linked.text);
    assert_eq!(
        count_rows(&app, "SELECT count(*) AS n FROM registrations WHERE held_resident_id_enc IS NOT NULL").await,
        1,
        "held on the linked registration"
    );
    let again = register(&app, &township, json!({"name": "张强", "resident_id": id})).await;
    assert_eq!(again.body["person"]["id"], holder_id.as_str(), "the ID still leads to its holder: {}", again.text);
}

/// A registration that links to a person but carries a resident ID that disagrees with the
/// person's birth date (a family member's ID given by mistake) does not give the person that ID:
/// it is held, encrypted, on the registration, so the next record with that ID does not follow
/// it to the wrong person. An insurance number is held the same way, never copied.
#[tokio::test]
async fn a_linked_registration_never_gives_the_person_an_identifier_that_disagrees_with_them() {
    let app = spawn_app().await;
    app.load_demo().await;
    let village = app.login("village.doctor").await;
    let first = register(
        &app,
        &village,
        json!({"name": "周桂兰", "sex": "female", "birth_date": "1956-03-21", "phone": "13955556666",
               "address_division": "130999101201"}),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let person = first.body["person"]["id"].as_str().unwrap().to_string();

    // Another clinic: same name, phone and village, and her sister's ID (born 1956-03-12).
    let sisters_id = rid("130999", "19560312", 222);
    let township = app.login("township.doctor").await;
    let linked = register(
        &app,
        &township,
        json!({"name": "周桂兰", "resident_id": sisters_id, "phone": "13955556666",
               "address_division": "130999101201", "insurance_no": "130999556677"}),
    )
    .await;
    assert_eq!(linked.status, 200, "linked on name, phone and village: {}", linked.text);
    assert_eq!(linked.body["person"]["id"], person.as_str());
    let read = app.get(&format!("/api/v1/patients/{person}"), &township.token).await;
    assert_eq!(read.body["resident_id"], serde_json::Value::Null, "the ID did not join the person: {}", read.text);
    assert_eq!(read.body["insurance_no"], serde_json::Value::Null, "nor did the insurance number");
    assert_eq!(read.body["birth_date"], "1956-03-21", "the person keeps her own birth date");
    let held = table_rows(&app, "SELECT held_resident_id_enc, held_insurance_enc FROM registrations").await.join("\n");
    assert!(!held.contains(&sisters_id) && !held.contains("130999556677"), "held encrypted: {held}");
    assert_eq!(
        count_rows(&app, "SELECT count(*) AS n FROM registrations WHERE held_resident_id_enc IS NOT NULL AND held_insurance_enc IS NOT NULL").await,
        1
    );

    // The sister herself comes with that ID: a new person, not the one the ID was typed against.
    let sister = register(&app, &village, json!({"name": "周桂芳", "resident_id": sisters_id})).await;
    assert_eq!(sister.status, 201, "{}", sister.text);
    assert_ne!(sister.body["person"]["id"], person.as_str());
}
