//! The playground: projects and their chats, and a chat with any model the
//! person may use, the answer streaming in as the model writes it (through
//! `POST …/chats/{chat}/messages`, read by the console's script).

use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use gatehouse_core::page::PageRequest;
use gatehouse_core::work::History;

use super::{Nav, OrPage, PageResult, Viewer, page_id, page_path, render, when};
use crate::rest::AppState;

/// The most organizations and projects the chat list walks, and the newest
/// chats it lists of each project (the REST list pages through all of them).
const MAX_ORGS: usize = 50;
const MAX_PROJECTS: usize = 50;
const CHATS_PER_PROJECT: usize = 100;
/// The newest messages a chat page shows, and about how much of their text.
const MESSAGES: usize = 500;
const MESSAGES_TEXT_BYTES: usize = 8 * 1024 * 1024;

pub(crate) struct ChatLink {
    pub href: String,
    pub name: String,
    pub model: String,
    pub starred: bool,
    pub current: bool,
}

pub(crate) struct ProjectChats {
    pub org: String,
    pub name: String,
    /// `{org}/projects/{project}`: where new chats go.
    pub path: String,
    pub chats: Vec<ChatLink>,
    /// Older chats than those listed exist.
    pub more: bool,
}

/// Every project the person can open, with their chats, and the
/// organizations new projects can go to.
async fn projects(
    state: &AppState,
    viewer: &Viewer,
    current: Option<gatehouse_core::Id>,
) -> Result<(Vec<ProjectChats>, Vec<(String, String)>), super::PageError> {
    let work = &state.services.work;
    let mut found = Vec::new();
    let orgs = state
        .services
        .tenancy
        .orgs_of(viewer.user.id)
        .await
        .or_page(viewer)?;
    let names = orgs
        .iter()
        .map(|(org, _)| (org.id.to_string(), org.name.clone()))
        .collect();
    for (org, _) in orgs.into_iter().take(MAX_ORGS) {
        let projects = work
            .list_projects(&viewer.user, org.id)
            .await
            .or_page(viewer)?;
        for project in projects.into_iter().take(MAX_PROJECTS) {
            let newest = PageRequest::first(CHATS_PER_PROJECT);
            let page = work
                .list_chats_page(&viewer.user, org.id, project.id, &newest)
                .await
                .or_page(viewer)?;
            let mut chats = page.items;
            chats.sort_by(|a, b| b.is_starred.cmp(&a.is_starred).then(b.id.cmp(&a.id)));
            found.push(ProjectChats {
                org: org.name.clone(),
                name: project.name,
                path: format!("{}/projects/{}", org.id, project.id),
                chats: chats
                    .into_iter()
                    .map(|c| ChatLink {
                        href: format!(
                            "{}/playground/{}/{}/{}",
                            viewer.base, c.org_id, c.project_id, c.id
                        ),
                        name: c.name,
                        model: c.model,
                        starred: c.is_starred,
                        current: Some(c.id) == current,
                    })
                    .collect(),
                more: page.next_cursor.is_some(),
            });
        }
    }
    Ok((found, names))
}

#[derive(Template)]
#[template(path = "console/playground.html")]
struct Playground {
    nav: Nav,
    projects: Vec<ProjectChats>,
    orgs: Vec<(String, String)>,
    models: Vec<String>,
}

pub(crate) async fn playground(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let (projects, orgs) = projects(&state, &viewer, None).await?;
    Ok(render(Playground {
        nav: viewer.nav("playground"),
        projects,
        orgs,
        models: super::home::usable_model_names(&state, viewer.user.id).await,
    }))
}

pub(crate) struct MessageView {
    pub role: &'static str,
    pub content: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "console/chat.html")]
struct ChatPage {
    nav: Nav,
    projects: Vec<ProjectChats>,
    orgs: Vec<(String, String)>,
    models: Vec<String>,
    /// `/api/v1/organizations/{org}/projects/{project}/chats/{chat}`.
    api: String,
    name: String,
    model: String,
    starred: bool,
    mine: bool,
    system_prompt: String,
    temperature: String,
    max_tokens: String,
    messages: Vec<MessageView>,
    /// Older messages than those shown exist (perhaps): the export has them.
    earlier: bool,
}

pub(crate) async fn chat(
    State(state): State<AppState>,
    viewer: Viewer,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> PageResult {
    let (org, project, chat) = page_path(&viewer, path)?;
    let (org, project, chat) = (
        page_id(&viewer, &org)?,
        page_id(&viewer, &project)?,
        page_id(&viewer, &chat)?,
    );
    // One more than is shown: whether there are earlier messages is then
    // known, not guessed (the text bound can still only be guessed at).
    let newest = History {
        newest: true,
        limit: MESSAGES + 1,
        max_bytes: MESSAGES_TEXT_BYTES,
    };
    let (found, mut messages) = state
        .services
        .work
        .chat_history(&viewer.user, (org, project, chat), newest)
        .await
        .or_page(&viewer)?;
    let earlier = messages.len() > MESSAGES || {
        let text: usize = messages.iter().map(|m| m.content.len()).sum();
        text >= MESSAGES_TEXT_BYTES
    };
    if messages.len() > MESSAGES {
        messages.remove(0);
    }
    let messages = messages
        .into_iter()
        .map(|m| MessageView {
            role: m.role.as_str(),
            detail: match (&m.model, m.completion_tokens) {
                (Some(model), tokens) if tokens > 0 => {
                    format!(
                        "{model} · {} tokens · {}",
                        tokens + m.prompt_tokens,
                        when(&m.created_at)
                    )
                }
                _ => when(&m.created_at),
            },
            content: m.content,
        })
        .collect();
    let parameter = |name: &str| {
        found
            .parameters
            .get(name)
            .map(|v| v.to_string())
            .unwrap_or_default()
    };
    let (projects, orgs) = projects(&state, &viewer, Some(chat)).await?;
    Ok(render(ChatPage {
        nav: viewer.nav("playground"),
        projects,
        orgs,
        models: super::home::usable_model_names(&state, viewer.user.id).await,
        api: format!("/api/v1/organizations/{org}/projects/{project}/chats/{chat}"),
        temperature: parameter("temperature"),
        max_tokens: parameter("max_tokens"),
        mine: found.owner_id == viewer.user.id,
        name: found.name,
        model: found.model,
        starred: found.is_starred,
        system_prompt: found.system_prompt.unwrap_or_default(),
        messages,
        earlier,
    }))
}
