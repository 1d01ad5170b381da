//! Deleting projects and chats without one huge transaction: the record
//! goes at once, with a [`Purge`] marker, in the deleting transaction (so
//! the project or chat is gone for everyone from then on); its chats and
//! messages then go a page per transaction, and the marker last. A marker
//! left by a stopped instance is finished by the leader's `purge` job, so
//! nothing is orphaned.

use gatehouse_storage::{KeyRange, RangeOptions};

use super::*;
use crate::model::work::Purge;

/// Records removed per transaction (messages hold up to 256 KiB each).
const PAGE: usize = 200;

/// Removes a project from view and marks its chats and messages for removal.
pub(crate) async fn remove_project(tx: &Tx, project: &Project) -> Result<(), TxError<Error>> {
    keyspace::project(project.org_id, project.id)
        .clear(tx)
        .await?;
    let purge = Purge::Project {
        org_id: project.org_id,
        project_id: project.id,
    };
    keyspace::purge(project.id).put(tx, &purge).await
}

/// Removes a chat from view and marks its messages for removal.
pub(crate) async fn remove_chat(tx: &Tx, chat: &Chat) -> Result<(), TxError<Error>> {
    keyspace::chat(chat.project_id, chat.id).clear(tx).await?;
    keyspace::user_chat(chat.owner_id, chat.id)
        .clear(tx)
        .await?;
    let purge = Purge::Chat { chat_id: chat.id };
    keyspace::purge(chat.id).put(tx, &purge).await
}

/// Removes up to `limit` chats of a user being deleted, each from view with
/// its purge marker; how many (0: none were left).
pub(crate) async fn remove_user_chats(
    tx: &Tx,
    user_id: Id,
    limit: usize,
) -> Result<usize, TxError<Error>> {
    let entries = tx
        .get_range(&keyspace::user_chats(user_id), RangeOptions::limit(limit))
        .await?;
    for (key, value) in &entries.entries {
        let at: crate::model::work::ChatRef =
            crate::codec::decode(value).map_err(TxError::Abort)?;
        let (_, _, chat_id): (String, u64, u64) = gatehouse_storage::tuple::unpack(key)
            .map_err(|e| TxError::Abort(Error::internal(format!("user_chat key: {e}"))))?;
        match keyspace::chat(at.project_id, Id(chat_id)).get(tx).await? {
            Some(chat) => remove_chat(tx, &chat).await?,
            None => tx.clear(key)?,
        }
    }
    Ok(entries.entries.len())
}

impl WorkService {
    /// Finishes every pending removal, a page per transaction; how many
    /// records went. Deletions call it; so does the leader's `purge` job for
    /// what a stopped instance left.
    pub async fn run_purges(&self) -> Result<usize> {
        let mut removed = 0;
        loop {
            let (pending, _) =
                crate::codec::read_page::<Purge>(&self.store, &keyspace::purges(), 50).await?;
            if pending.is_empty() {
                return Ok(removed);
            }
            for purge in pending {
                removed += match &purge {
                    Purge::Project { org_id, project_id } => {
                        self.purge_project(*org_id, *project_id).await?
                    }
                    Purge::Chat { chat_id } => self.purge_chat(*chat_id).await?,
                };
            }
        }
    }

    async fn purge_project(&self, _org_id: Id, project_id: Id) -> Result<usize> {
        let mut removed = 0;
        loop {
            let (chats, _) =
                crate::codec::read_page::<Chat>(&self.store, &keyspace::chats(project_id), PAGE)
                    .await?;
            if chats.is_empty() {
                break;
            }
            for chat in chats {
                removed += self.clear_messages(chat.id).await?;
                self.store
                    .run(|tx| {
                        let chat = &chat;
                        async move {
                            keyspace::chat(project_id, chat.id).clear(&tx).await?;
                            keyspace::user_chat(chat.owner_id, chat.id).clear(&tx).await
                        }
                    })
                    .await?;
                removed += 1;
            }
        }
        self.store
            .run(|tx| async move { keyspace::purge(project_id).clear(&tx).await })
            .await?;
        Ok(removed)
    }

    async fn purge_chat(&self, chat_id: Id) -> Result<usize> {
        let removed = self.clear_messages(chat_id).await?;
        self.store
            .run(|tx| async move { keyspace::purge(chat_id).clear(&tx).await })
            .await?;
        Ok(removed)
    }

    /// Clears a chat's messages, their texts' later parts and its system
    /// prompt's; how many messages went.
    async fn clear_messages(&self, chat_id: Id) -> Result<usize> {
        let removed = self
            .clear_in_pages(&keyspace::chat_messages(chat_id))
            .await?;
        self.clear_in_pages(&keyspace::chat_message_parts_of(chat_id))
            .await?;
        self.clear_in_pages(&keyspace::chat_prompt_parts(chat_id))
            .await?;
        Ok(removed)
    }

    /// Clears `range` a page per transaction; how many records went.
    async fn clear_in_pages(&self, range: &KeyRange) -> Result<usize> {
        let mut removed = 0;
        loop {
            let gone = self
                .store
                .run(|tx| async move {
                    let page = tx.get_range(range, RangeOptions::limit(PAGE)).await?;
                    if let Some((last, _)) = page.entries.last() {
                        let upto = gatehouse_storage::key_after(last);
                        tx.clear_range(&KeyRange::new(range.begin.clone(), upto))?;
                    }
                    Ok::<_, TxError<Error>>(page.entries.len())
                })
                .await?;
            removed += gone;
            if gone < PAGE {
                return Ok(removed);
            }
        }
    }
}
