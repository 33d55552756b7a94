"""Mailboxes: Maildir++ on disk plus a per-mailbox index.

    store = Mailstore(settings.mailbox_directory)   # one per process
    create_user(settings, "alice")                  # Maildir + Sent, Drafts...
    mailbox = await store.user("alice").mailbox("INBOX")
    uid = await mailbox.append(data_with_lf, frozenset({"\\\\Seen"}), None)

``maildir`` holds the low-level writes (deliver, ensure, unique_name);
``interface`` the Protocols another backend would implement.
"""

from roost.mailstore.errors import MailstoreError
from roost.mailstore.mailbox import Mailbox, MailboxView, Message
from roost.mailstore.store import (
    FolderInfo,
    MailboxStatus,
    Mailstore,
    UserStore,
    create_user,
)

__all__ = [
    "FolderInfo",
    "Mailbox",
    "MailboxStatus",
    "MailboxView",
    "Mailstore",
    "MailstoreError",
    "Message",
    "UserStore",
    "create_user",
]
