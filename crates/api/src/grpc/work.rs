//! `gatehouse.v1.WorkService`: projects, chats and messages for internal
//! services, read through the same `core` rules as REST.

use gatehouse_core::Id;
use gatehouse_core::model::work::{Chat, ChatMessage, Project};
use gatehouse_core::page::PageRequest;
use gatehouse_core::services::Services;
use gatehouse_grpc::v1::work_service_server::WorkService;
use gatehouse_grpc::v1::{
    Chat as ChatOut, ChatMessage as MessageOut, GetChatRequest, ListChatsRequest,
    ListChatsResponse, ListMessagesRequest, ListMessagesResponse, ListProjectsRequest,
    ListProjectsResponse, Project as ProjectOut,
};
use tonic::{Request, Response, Status};

use super::DirectoryGrpc;
use crate::ApiError;

pub struct WorkGrpc {
    pub(super) directory: DirectoryGrpc,
    pub(super) services: Services,
}

/// The most text (and `content_raw_json`) one `ListMessages` answer holds:
/// under the 4 MiB that gRPC clients accept by default (grpcio, grpc-go,
/// tonic), with room for the messages' other fields. A page ends early,
/// with a cursor, rather than be refused by the caller.
const PAGE_BYTES: usize = 3 * 1024 * 1024;

fn id(field: &str, value: &str) -> Result<Id, Status> {
    value
        .parse()
        .map_err(|_| Status::invalid_argument(format!("`{field}` is not an ID")))
}

fn project(p: Project) -> ProjectOut {
    ProjectOut {
        id: p.id.to_string(),
        organization_id: p.org_id.to_string(),
        name: p.name,
        is_user_default: p.is_user_default,
        created_at: p.created_at.to_rfc3339(),
        updated_at: p.updated_at.to_rfc3339(),
    }
}

fn chat(c: Chat) -> ChatOut {
    ChatOut {
        id: c.id.to_string(),
        organization_id: c.org_id.to_string(),
        project_id: c.project_id.to_string(),
        owner_id: c.owner_id.to_string(),
        name: c.name,
        model: c.model,
        is_starred: c.is_starred,
        is_user_default: c.is_user_default,
        shared: c.shared,
        system_prompt: c.system_prompt.unwrap_or_default(),
        parameters_json: serde_json::Value::Object(c.parameters).to_string(),
        created_at: c.created_at.to_rfc3339(),
        updated_at: c.updated_at.to_rfc3339(),
    }
}

fn message(m: ChatMessage) -> MessageOut {
    MessageOut {
        id: m.id.to_string(),
        chat_id: m.chat_id.to_string(),
        role: m.role.as_str().to_string(),
        content: m.content,
        content_raw_json: m.content_raw.to_string(),
        model: m.model.unwrap_or_default(),
        prompt_tokens: m.prompt_tokens,
        completion_tokens: m.completion_tokens,
        cost_micros: m.cost_micros,
        is_context_file: m.is_context_file,
        is_tool_message: m.is_tool_message,
        partial: m.partial,
        request_id: m.request_id.map(|r| r.to_string()).unwrap_or_default(),
        created_at: m.created_at.to_rfc3339(),
    }
}

#[tonic::async_trait]
impl WorkService for WorkGrpc {
    async fn list_projects(
        &self,
        request: Request<ListProjectsRequest>,
    ) -> Result<Response<ListProjectsResponse>, Status> {
        let caller = self.directory.caller(&request).await?;
        let org = id("organization_id", &request.get_ref().organization_id)?;
        let projects = self
            .services
            .work
            .list_projects(&caller, org)
            .await
            .map_err(ApiError)?;
        Ok(Response::new(ListProjectsResponse {
            projects: projects.into_iter().map(project).collect(),
        }))
    }

    async fn list_chats(
        &self,
        request: Request<ListChatsRequest>,
    ) -> Result<Response<ListChatsResponse>, Status> {
        let caller = self.directory.caller(&request).await?;
        let r = request.get_ref();
        let (org, project) = (
            id("organization_id", &r.organization_id)?,
            id("project_id", &r.project_id)?,
        );
        let work = &self.services.work;
        if r.limit == 0 {
            let mut chats = work
                .list_chats(&caller, org, project)
                .await
                .map_err(ApiError)?;
            chats.sort_by_key(|c| std::cmp::Reverse(c.id));
            return Ok(Response::new(ListChatsResponse {
                chats: chats.into_iter().map(chat).collect(),
                next_cursor: String::new(),
            }));
        }
        let cursor = (!r.cursor.is_empty()).then(|| r.cursor.clone());
        let page = PageRequest::new(Some(u64::from(r.limit)), cursor).map_err(ApiError)?;
        let found = work
            .list_chats_page(&caller, org, project, &page)
            .await
            .map_err(ApiError)?;
        Ok(Response::new(ListChatsResponse {
            chats: found.items.into_iter().map(chat).collect(),
            next_cursor: found.next_cursor.unwrap_or_default(),
        }))
    }

    async fn get_chat(
        &self,
        request: Request<GetChatRequest>,
    ) -> Result<Response<ChatOut>, Status> {
        let caller = self.directory.caller(&request).await?;
        let r = request.get_ref();
        let found = self
            .services
            .work
            .get_chat(
                &caller,
                id("organization_id", &r.organization_id)?,
                id("project_id", &r.project_id)?,
                id("chat_id", &r.chat_id)?,
            )
            .await
            .map_err(ApiError)?;
        Ok(Response::new(chat(found)))
    }

    async fn list_messages(
        &self,
        request: Request<ListMessagesRequest>,
    ) -> Result<Response<ListMessagesResponse>, Status> {
        let caller = self.directory.caller(&request).await?;
        let r = request.get_ref();
        let at = (
            id("organization_id", &r.organization_id)?,
            id("project_id", &r.project_id)?,
            id("chat_id", &r.chat_id)?,
        );
        let limit = (r.limit != 0).then_some(u64::from(r.limit));
        let cursor = (!r.cursor.is_empty()).then(|| r.cursor.clone());
        let page = PageRequest::new(limit, cursor).map_err(ApiError)?;
        let found = self
            .services
            .work
            .list_messages(&caller, at, &page, PAGE_BYTES)
            .await
            .map_err(ApiError)?;
        Ok(Response::new(ListMessagesResponse {
            messages: found.items.into_iter().map(message).collect(),
            next_cursor: found.next_cursor.unwrap_or_default(),
        }))
    }
}
