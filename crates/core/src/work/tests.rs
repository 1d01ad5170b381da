//! Tests of projects, chats and messages on the memory engine.

use gatehouse_storage::memory::MemoryEngine;

use super::*;
use crate::ErrorCode;
use crate::model::accounts::Role;
use crate::model::tenancy::OrgRole;
use crate::model::work::MessageRole;
use crate::page::PageRequest;
use crate::tenancy::TenancyService;

struct World {
    work: WorkService,
    tenancy: TenancyService,
    store: Store,
    env: Env,
    client: ClientInfo,
}

fn world() -> World {
    let (env, _clock) = crate::testing::env(1, 7);
    let store = Store::new(Arc::new(MemoryEngine::new()));
    let audit = Arc::new(AuditLog::new(store.clone(), env.clone()));
    World {
        work: WorkService::new(store.clone(), env.clone(), audit.clone()),
        tenancy: TenancyService::new(store.clone(), env.clone(), audit),
        store,
        env,
        client: ClientInfo::default(),
    }
}

impl World {
    async fn user(&self, name: &str) -> User {
        crate::testing::user(&self.store, &self.env, name, &[Role::User]).await
    }

    /// A page of a chat's messages, as REST reads it.
    async fn messages(
        &self,
        actor: &User,
        at: (Id, Id, Id),
        page: &PageRequest,
    ) -> crate::page::Page<crate::model::work::ChatMessage> {
        let most = crate::work::MAX_PAGE_TEXT_BYTES;
        self.work
            .list_messages(actor, at, page, most)
            .await
            .unwrap()
    }

    /// Ada, and a chat of hers in her default project: `(org, project, chat)`.
    async fn ada_chat(&self) -> (User, (Id, Id, Id)) {
        let ada = self.user("ada").await;
        let org = crate::testing::personal_org(&self.store, ada.id).await;
        let project = self.work.list_projects(&ada, org).await.unwrap()[0].clone();
        let chat = self
            .work
            .create_chat(&ada, org, project.id, spec("llama"), &self.client)
            .await
            .unwrap();
        (ada, (org, project.id, chat.id))
    }

    /// An organization with an owner and a member (added directly).
    async fn org(&self) -> (Id, User, User) {
        let owner = self.user("owner").await;
        let member = self.user("member").await;
        let org = self
            .tenancy
            .create_org(&owner, "Acme", &self.client)
            .await
            .unwrap();
        let membership = crate::model::tenancy::Membership {
            org_id: org.id,
            user_id: member.id,
            role: OrgRole::Member,
            joined_at: self.env.clock.now(),
            sso_provider: None,
        };
        self.store
            .run(|tx| {
                let m = &membership;
                async move {
                    keyspace::org_member(m.org_id, m.user_id)
                        .put(&tx, m)
                        .await?;
                    let at = crate::model::tenancy::UserOrgRef { org_id: m.org_id };
                    keyspace::user_org(m.user_id, m.org_id).put(&tx, &at).await
                }
            })
            .await
            .unwrap();
        (org.id, owner, member)
    }
}

fn spec(model: &str) -> ChatSpec {
    ChatSpec {
        model: model.into(),
        ..ChatSpec::default()
    }
}

#[tokio::test]
async fn every_account_has_a_default_project_in_its_personal_organization() {
    let w = world();
    let ada = w.user("ada").await;
    let personal = crate::testing::personal_org(&w.store, ada.id).await;
    let projects = w.work.list_projects(&ada, personal).await.unwrap();
    assert_eq!(projects.len(), 1);
    assert!(projects[0].is_user_default);
    assert_eq!(projects[0].name, DEFAULT_PROJECT);
    // Not deletable by itself; the migration finds nothing to do.
    let err = w
        .work
        .delete_project(&ada, personal, projects[0].id, &w.client)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);
    assert_eq!(w.work.ensure_default_projects().await.unwrap(), 0);
}

#[tokio::test]
async fn the_migration_gives_older_personal_organizations_their_default_project_once() {
    let w = world();
    let ada = w.user("ada").await;
    let personal = crate::testing::personal_org(&w.store, ada.id).await;
    let project = w.work.list_projects(&ada, personal).await.unwrap()[0].clone();
    // As before projects existed.
    w.store
        .run(|tx| async move { keyspace::project(personal, project.id).clear(&tx).await })
        .await
        .unwrap();
    assert_eq!(w.work.ensure_default_projects().await.unwrap(), 1);
    assert_eq!(w.work.list_projects(&ada, personal).await.unwrap().len(), 1);
    assert_eq!(w.work.ensure_default_projects().await.unwrap(), 0, "once");
}

#[tokio::test]
async fn chats_are_their_owners_shared_ones_every_members_and_outsiders_see_nothing() {
    let w = world();
    let (org, owner, member) = w.org().await;
    let outsider = w.user("outsider").await;
    let c = &w.client;
    // Members read projects but only owners and admins make them.
    let err = w
        .work
        .create_project(&member, org, "Research", c)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
    let project = w
        .work
        .create_project(&owner, org, "Research", c)
        .await
        .unwrap();
    assert_eq!(w.work.list_projects(&member, org).await.unwrap().len(), 1);
    let err = w.work.list_projects(&outsider, org).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);

    let private = w
        .work
        .create_chat(&member, org, project.id, spec("llama"), c)
        .await
        .unwrap();
    let mut shared_spec = spec("llama");
    shared_spec.shared = true;
    let shared = w
        .work
        .create_chat(&owner, org, project.id, shared_spec, c)
        .await
        .unwrap();
    let ids = |chats: Vec<Chat>| chats.into_iter().map(|c| c.id).collect::<Vec<_>>();
    // The member sees their own and the shared one; the owner (who manages
    // projects) sees both; an outsider nothing.
    let mine = ids(w.work.list_chats(&member, org, project.id).await.unwrap());
    assert_eq!(mine, vec![private.id, shared.id]);
    assert_eq!(
        ids(w.work.list_chats(&owner, org, project.id).await.unwrap()).len(),
        2
    );
    let at = (org, project.id, shared.id);
    let err = w
        .work
        .get_chat(&outsider, org, project.id, shared.id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    // Only the owner writes: a member reading a shared chat cannot post to it.
    let message = NewMessage::text(MessageRole::User, "hello".into());
    let err = w
        .work
        .append_message(&member, at, message.clone(), &w.client)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
    let star = ChatChange {
        is_starred: Some(true),
        ..ChatChange::default()
    };
    assert!(
        w.work
            .update_chat(&member, at, star.clone(), c)
            .await
            .is_err()
    );
    assert!(
        w.work
            .update_chat(&owner, at, star, c)
            .await
            .unwrap()
            .is_starred
    );
    // The organization's owner deletes the member's private chat.
    let theirs = (org, project.id, private.id);
    w.work.delete_chat(&owner, theirs, c).await.unwrap();
    let err = w
        .work
        .get_chat(&member, org, project.id, private.id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
}

#[tokio::test]
async fn messages_page_in_order_and_bad_input_changes_nothing() {
    let w = world();
    let (ada, at) = w.ada_chat().await;
    let (org, project, _) = at;
    for i in 0..5 {
        let m = NewMessage::text(MessageRole::User, format!("message {i}"));
        w.work.append_message(&ada, at, m, &w.client).await.unwrap();
    }
    let first = w.messages(&ada, at, &PageRequest::first(3)).await;
    assert_eq!(first.items.len(), 3);
    let next = PageRequest::new(Some(3), first.next_cursor.clone()).unwrap();
    let second = w.messages(&ada, at, &next).await;
    let texts: Vec<_> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|m| m.content.clone())
        .collect();
    assert_eq!(
        texts,
        (0..5).map(|i| format!("message {i}")).collect::<Vec<_>>()
    );
    assert!(second.next_cursor.is_none());
    // The model's context: the newest, in order, within a count and a size.
    let newest = History {
        newest: true,
        limit: 2,
        max_bytes: 1 << 20,
    };
    let (_, context) = w.work.chat_history(&ada, at, newest).await.unwrap();
    let texts: Vec<_> = context.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(texts, ["message 3", "message 4"]);
    let small = History {
        newest: false,
        limit: 100,
        max_bytes: 15,
    };
    let (_, first) = w.work.chat_history(&ada, at, small).await.unwrap();
    assert_eq!(
        first.len(),
        2,
        "the message that crosses the size is the last"
    );
    // Too long (in bytes, or in characters: the documented `maxLength`),
    // unknown parameters, no model: refused.
    for long in [
        "x".repeat(MAX_CONTENT_BYTES + 1),
        "x".repeat(crate::work::MAX_CONTENT_CHARS + 1),
    ] {
        let long = NewMessage::text(MessageRole::User, long);
        assert_eq!(
            w.work
                .append_message(&ada, at, long, &w.client)
                .await
                .unwrap_err()
                .code(),
            ErrorCode::InvalidInput
        );
    }
    // A model's answer is cut to what a message holds, at a character
    // boundary.
    let answer = crate::work::clipped("é".repeat(200_000));
    assert_eq!(answer.chars().count(), crate::work::MAX_CONTENT_CHARS);
    let answer = crate::work::clipped("€".repeat(200_000));
    assert!(answer.len() <= MAX_CONTENT_BYTES && answer.chars().all(|c| c == '€'));
    assert_eq!(crate::work::clipped("€".repeat(10)), "€".repeat(10));
    let mut odd = spec("llama");
    odd.parameters
        .insert("logit_bias".into(), serde_json::json!({}));
    assert!(
        w.work
            .create_chat(&ada, org, project, odd, &w.client)
            .await
            .is_err()
    );
    assert!(
        w.work
            .create_chat(&ada, org, project, spec(" "), &w.client)
            .await
            .is_err()
    );
    // Sampling parameters out of their documented ranges are refused.
    for (name, value) in [
        ("top_p", serde_json::json!(-1)),
        ("temperature", serde_json::json!(2.5)),
        ("presence_penalty", serde_json::json!("high")),
        ("max_tokens", serde_json::json!(0)),
        ("stop", serde_json::json!(["a", "b", "c", "d", "e"])),
        ("stop", serde_json::json!([""])),
    ] {
        let mut odd = spec("llama");
        odd.parameters.insert(name.into(), value);
        let refused = w.work.create_chat(&ada, org, project, odd, &w.client).await;
        assert_eq!(
            refused.unwrap_err().code(),
            ErrorCode::InvalidInput,
            "{name}"
        );
    }
    assert_eq!(
        w.work.list_chats(&ada, org, project).await.unwrap().len(),
        1
    );
    // Unnamed, a chat takes its model's name, cut to what a name holds.
    let long_model = spec(&"m".repeat(200));
    let named = w
        .work
        .create_chat(&ada, org, project, long_model, &w.client)
        .await
        .unwrap();
    assert_eq!(named.name, "m".repeat(100));
}

#[tokio::test]
async fn every_message_the_limits_allow_stores_whole_and_goes_with_its_chat() {
    let w = world();
    let (ada, at) = w.ada_chat().await;
    // The longest texts there are: in characters, in bytes, and as JSON
    // (quotes and control characters are written escaped, up to six bytes).
    let texts = [
        "x".repeat(crate::work::MAX_CONTENT_CHARS),
        "\u{1d11e}".repeat(MAX_CONTENT_BYTES / 4),
        "\"".repeat(crate::work::MAX_CONTENT_CHARS),
        "\u{1}".repeat(crate::work::MAX_CONTENT_CHARS),
        format!("{}\n\\ end", "é€\t".repeat(10_000)),
        String::new(),
    ];
    for text in &texts {
        let m = NewMessage::text(MessageRole::User, text.clone());
        let stored = w.work.append_message(&ada, at, m, &w.client).await.unwrap();
        assert_eq!(&stored.content, text);
    }
    let file = NewMessage::context_file("notes.md", texts[1].clone()).unwrap();
    w.work
        .append_message(&ada, at, file, &w.client)
        .await
        .unwrap();
    let page = w.messages(&ada, at, &PageRequest::first(100)).await;
    assert_eq!(page.items.len(), texts.len() + 1);
    for (message, text) in page.items.iter().zip(&texts) {
        assert_eq!(&message.content, text);
        assert_eq!(
            message.content_raw,
            serde_json::json!({"role": "user", "content": text})
        );
    }
    let file = &page.items[texts.len()];
    assert!(file.is_context_file);
    assert_eq!(file.content, texts[1]);
    assert_eq!(file.content_raw["name"], "notes.md");
    assert_eq!(
        file.for_model()["content"],
        format!("Context file `notes.md`:\n\n{}", texts[1])
    );
    let all = History {
        newest: true,
        limit: 100,
        max_bytes: 1 << 30,
    };
    let (_, history) = w.work.chat_history(&ada, at, all).await.unwrap();
    assert_eq!(history, page.items);
    // A file named against the rules is refused before anything is stored.
    assert!(NewMessage::context_file("bad\u{0}", "x".into()).is_err());

    // What earlier releases stored — the text twice, no parts — still reads.
    let old = serde_json::json!({
        "id": "9", "chat_id": at.2, "role": "assistant", "content": "old",
        "content_raw": {"role": "assistant", "content": "old", "tool_calls": []},
        "model": "llama", "prompt_tokens": 1, "completion_tokens": 2, "cost_micros": 3,
        "is_context_file": false, "is_tool_message": false, "partial": false,
        "request_id": null, "created_at": "2026-01-01T00:00:00Z",
    });
    let mut bytes = vec![1u8];
    bytes.extend(serde_json::to_vec(&old).unwrap());
    let key = keyspace::chat_message(at.2, Id(9));
    w.store
        .run(|tx| {
            let (key, bytes) = (&key, &bytes);
            async move {
                tx.set(key.as_bytes(), bytes)
                    .map_err(TxError::<Error>::Storage)
            }
        })
        .await
        .unwrap();
    let page = w
        .work
        .list_messages(&ada, at, &PageRequest::first(1), 1)
        .await
        .unwrap();
    assert_eq!(page.items[0].content, "old");
    assert_eq!(
        page.items[0].content_raw["tool_calls"],
        serde_json::json!([])
    );

    // Deleting the chat takes every part of every text.
    w.work.delete_chat(&ada, at, &w.client).await.unwrap();
    let left = w
        .store
        .read_range(&keyspace::chat_message_parts_of(at.2), Default::default())
        .await
        .unwrap();
    assert!(left.entries.is_empty());
}

#[tokio::test]
async fn a_page_of_messages_ends_early_rather_than_hold_too_much_text() {
    let w = world();
    let (ada, at) = w.ada_chat().await;
    // Each message costs its text and `content_raw` as JSON: 1000 bytes and
    // 1030 here, so four fit in 10 000 bytes and the fifth crosses.
    for _ in 0..10 {
        let m = NewMessage::text(MessageRole::User, "y".repeat(1000));
        w.work.append_message(&ada, at, m, &w.client).await.unwrap();
    }
    let mut sizes = Vec::new();
    let mut page = PageRequest::first(500);
    loop {
        let got = w.work.list_messages(&ada, at, &page, 10_000).await.unwrap();
        sizes.push(got.items.len());
        let Some(cursor) = got.next_cursor else { break };
        page = PageRequest::new(Some(500), Some(cursor)).unwrap();
    }
    assert_eq!(sizes, [4, 4, 2]);
    // One message larger than the budget still makes a page.
    let one = w
        .work
        .list_messages(&ada, at, &PageRequest::first(500), 10)
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
    // What REST allows holds 500 of the longest messages' 64 at most.
    let m = NewMessage::text(MessageRole::User, "\u{1d11e}".repeat(MAX_CONTENT_BYTES / 4));
    for _ in 0..70 {
        w.work
            .append_message(&ada, at, m.clone(), &w.client)
            .await
            .unwrap();
    }
    let rest = crate::work::MAX_PAGE_TEXT_BYTES;
    let first = w
        .work
        .list_messages(&ada, at, &PageRequest::first(500), rest)
        .await
        .unwrap();
    assert!(
        first.items.len() < 64 && first.next_cursor.is_some(),
        "{}",
        first.items.len()
    );
}

#[tokio::test]
async fn a_project_with_ten_thousand_messages_is_deleted_a_page_at_a_time() {
    let w = world();
    let (org, owner, member) = w.org().await;
    let c = &w.client;
    let project = w.work.create_project(&owner, org, "Big", c).await.unwrap();
    let chat = w
        .work
        .create_chat(&member, org, project.id, spec("llama"), c)
        .await
        .unwrap();
    // Ten thousand messages, written straight to the store in batches.
    for batch in 0..20 {
        let messages: Vec<_> = (0..500)
            .map(|i| crate::model::work::StoredMessage {
                id: Id(1_000_000 + batch * 500 + i),
                chat_id: chat.id,
                role: MessageRole::User,
                content: "a message of some length ".repeat(20),
                parts: 0,
                file_name: None,
                content_raw: None,
                model: None,
                prompt_tokens: 0,
                completion_tokens: 0,
                cost_micros: 0,
                is_context_file: false,
                is_tool_message: false,
                partial: false,
                request_id: None,
                created_at: w.env.clock.now(),
            })
            .collect();
        w.store
            .run(|tx| {
                let messages = &messages;
                async move {
                    for m in messages {
                        keyspace::chat_message(m.chat_id, m.id).put(&tx, m).await?;
                    }
                    Ok::<_, TxError<Error>>(())
                }
            })
            .await
            .unwrap();
    }
    w.work
        .delete_project(&owner, org, project.id, c)
        .await
        .unwrap();
    let left = w
        .store
        .run(|tx| async move {
            let messages = tx
                .get_range(&keyspace::chat_messages(chat.id), Default::default())
                .await?;
            let chats = tx
                .get_range(&keyspace::chats(project.id), Default::default())
                .await?;
            let purges = tx
                .get_range(&keyspace::purges(), Default::default())
                .await?;
            let index = tx
                .get_range(&keyspace::user_chats(member.id), Default::default())
                .await?;
            Ok::<_, TxError<Error>>(
                messages.entries.len()
                    + chats.entries.len()
                    + purges.entries.len()
                    + index.entries.len(),
            )
        })
        .await
        .unwrap();
    assert_eq!(
        left, 0,
        "every chat, message, index entry and marker is gone"
    );
}

#[tokio::test]
async fn deleting_an_organization_or_a_user_takes_their_projects_and_chats() {
    let w = world();
    let (org, owner, member) = w.org().await;
    let c = &w.client;
    let project = w
        .work
        .create_project(&owner, org, "Research", c)
        .await
        .unwrap();
    let chat = w
        .work
        .create_chat(&member, org, project.id, spec("llama"), c)
        .await
        .unwrap();
    let at = (org, project.id, chat.id);
    w.work
        .append_message(
            &member,
            at,
            NewMessage::text(MessageRole::User, "hi".into()),
            c,
        )
        .await
        .unwrap();
    // The member's own chats go with the member.
    w.store
        .run(|tx| {
            let member = &member;
            async move {
                crate::tenancy::start_user_removal(&tx, member, chrono::Utc::now())
                    .await
                    .map(|_| ())
            }
        })
        .await
        .unwrap();
    w.tenancy.run_removals().await.unwrap();
    w.work.run_purges().await.unwrap();
    assert!(
        w.work
            .list_chats(&owner, org, project.id)
            .await
            .unwrap()
            .is_empty()
    );
    // The organization takes its projects.
    w.tenancy.delete_org(&owner, org, c).await.unwrap();
    w.tenancy.run_removals().await.unwrap();
    assert!(w.work.run_purges().await.is_ok());
    let left = w
        .store
        .run(|tx| async move {
            let projects = tx
                .get_range(&keyspace::projects(org), Default::default())
                .await?;
            let messages = tx
                .get_range(&keyspace::chat_messages(chat.id), Default::default())
                .await?;
            Ok::<_, TxError<Error>>(projects.entries.len() + messages.entries.len())
        })
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn every_system_prompt_the_limits_allow_stores_whole() {
    let w = world();
    let (ada, at) = w.ada_chat().await;
    let (org, project, chat) = at;
    let update = |change: ChatChange| w.work.update_chat(&ada, at, change, &w.client);
    let parts_left = || async {
        let range = keyspace::chat_prompt_parts(chat);
        w.store
            .read_range(&range, Default::default())
            .await
            .unwrap()
            .entries
            .len()
    };
    for prompt in [
        "é".repeat(crate::work::MAX_CONTENT_CHARS),
        "\u{1}".repeat(crate::work::MAX_CONTENT_CHARS),
        "\u{1d11e}".repeat(MAX_CONTENT_BYTES / 4),
    ] {
        let change = ChatChange {
            system_prompt: Some(Some(prompt.clone())),
            ..ChatChange::default()
        };
        let changed = update(change).await.unwrap();
        assert_eq!(changed.system_prompt.as_ref(), Some(&prompt));
        let parts = parts_left().await;
        assert!(parts > 0, "a long prompt is kept in parts");
        // Renaming and starring keep it, and its parts.
        let change = ChatChange {
            name: Some("Renamed".into()),
            is_starred: Some(true),
            ..ChatChange::default()
        };
        let changed = update(change).await.unwrap();
        assert_eq!(
            (changed.name.as_str(), changed.is_starred),
            ("Renamed", true)
        );
        assert_eq!(changed.system_prompt.as_ref(), Some(&prompt));
        assert_eq!(parts_left().await, parts);
        // A message added leaves it as it is.
        let m = NewMessage::text(MessageRole::User, "hi".into());
        w.work.append_message(&ada, at, m, &w.client).await.unwrap();
        let read = w.work.get_chat(&ada, org, project, chat).await.unwrap();
        assert_eq!(read.system_prompt.as_ref(), Some(&prompt));
        let listed = w.work.list_chats(&ada, org, project).await.unwrap();
        let listed = listed.iter().find(|c| c.id == chat).unwrap();
        assert_eq!(listed.system_prompt.as_ref(), Some(&prompt));
        let window = History {
            newest: true,
            limit: 10,
            max_bytes: 1 << 20,
        };
        let (_, request) = w.work.next_turn(&ada, at, "next", window).await.unwrap();
        assert_eq!(request["messages"][0]["content"], prompt.as_str());
    }
    // A new chat may start with one, too.
    let long = ChatSpec {
        system_prompt: Some("\"".repeat(crate::work::MAX_CONTENT_CHARS)),
        ..spec("llama")
    };
    let started = w
        .work
        .create_chat(&ada, org, project, long, &w.client)
        .await
        .unwrap();
    let read = w
        .work
        .get_chat(&ada, org, project, started.id)
        .await
        .unwrap();
    assert_eq!(read.system_prompt, started.system_prompt);
    // A short prompt replaces a long one's parts; deleting takes them.
    let change = ChatChange {
        system_prompt: Some(Some("Be brief.".into())),
        ..ChatChange::default()
    };
    update(change).await.unwrap();
    assert_eq!(parts_left().await, 0);
    let read = w.work.get_chat(&ada, org, project, chat).await.unwrap();
    assert_eq!(read.system_prompt.as_deref(), Some("Be brief."));
    // A long prompt an earlier release kept inline: renaming puts it in parts.
    let inline = "é".repeat(40_000);
    let old = Chat {
        system_prompt: Some(inline.clone()),
        ..read.clone()
    };
    w.store
        .run(|tx| {
            let old = &old;
            async move { keyspace::chat(project, chat).put(&tx, old).await }
        })
        .await
        .unwrap();
    let change = ChatChange {
        name: Some("Old one".into()),
        ..ChatChange::default()
    };
    update(change).await.unwrap();
    assert!(parts_left().await > 0);
    let read = w.work.get_chat(&ada, org, project, chat).await.unwrap();
    assert_eq!(read.system_prompt.as_ref(), Some(&inline));
    let change = ChatChange {
        system_prompt: Some(Some("é".repeat(crate::work::MAX_CONTENT_CHARS))),
        ..ChatChange::default()
    };
    update(change).await.unwrap();
    assert!(parts_left().await > 0);
    w.work.delete_chat(&ada, at, &w.client).await.unwrap();
    assert_eq!(parts_left().await, 0);
}

#[tokio::test]
async fn chats_page_newest_first_over_the_store_as_the_whole_list_has_them() {
    let w = world();
    let (org, owner, member) = w.org().await;
    let c = &w.client;
    let project = w.work.create_project(&owner, org, "Many", c).await.unwrap();
    for i in 0..120 {
        // Mostly the owner's private chats, which the member does not see.
        let (who, shared) = match i % 6 {
            0 => (&member, false),
            1 => (&owner, true),
            _ => (&owner, false),
        };
        let mut chat = spec("llama");
        chat.shared = shared;
        w.work
            .create_chat(who, org, project.id, chat, c)
            .await
            .unwrap();
    }
    for (actor, expect) in [(&member, 40), (&owner, 120)] {
        let mut all: Vec<Id> = w
            .work
            .list_chats(actor, org, project.id)
            .await
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect();
        all.sort_by(|a, b| b.cmp(a));
        assert_eq!(all.len(), expect);
        let mut paged = Vec::new();
        let mut page = PageRequest::first(7);
        loop {
            let got = w
                .work
                .list_chats_page(actor, org, project.id, &page)
                .await
                .unwrap();
            assert!(got.items.len() <= 7);
            paged.extend(got.items.iter().map(|c| c.id));
            let Some(cursor) = got.next_cursor else { break };
            page = PageRequest::new(Some(7), Some(cursor)).unwrap();
        }
        assert_eq!(paged, all, "newest first, each once");
    }
    let outsider = w.user("outsider").await;
    let refused = w
        .work
        .list_chats_page(&outsider, org, project.id, &PageRequest::first(7))
        .await;
    assert_eq!(refused.unwrap_err().code(), ErrorCode::NotFound);
}
