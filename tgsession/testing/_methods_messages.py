"""RPC methods of messages and updates: send, edit, delete, forward, pin, history, buttons,
and the update state and differences."""

from __future__ import annotations

from typing import Any

from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject

from ._accounts import Account
from ._boxes import StoredMessage
from ._chats import Chat
from ._methods import (
    BOOL_TRUE,
    Call,
    _handles,
    resolve_channel,
    resolve_peer,
)
from ._world import RpcFailure, Target, now

_MAX_TEXT = 4096


def _check_text(text: str | None, *, allow_empty: bool = False) -> str:
    text = text or ""
    if not allow_empty and not text.strip():
        raise RpcFailure(400, "MESSAGE_EMPTY")
    if len(text) > _MAX_TEXT:
        raise RpcFailure(400, "MESSAGE_TOO_LONG")
    return text


def reply_id(reply_to: Any) -> int | None:
    """The message id an ``InputReplyTo`` points at, if any."""
    return getattr(reply_to, "reply_to_msg_id", None)


def chats_of(target: Target) -> list[Chat]:
    return [target] if isinstance(target, Chat) else []


def users_of(me: Account, target: Target) -> list[Account]:
    return [me] + ([target] if isinstance(target, Account) else [])


def updates_result(call: Call, target: Target, updates: list[Any]) -> TLObject:
    """What a sending or editing method returns: an ``Updates`` for the caller."""
    me = call.me()
    return call.world.updates_for(me, updates, users_of(me, target), chats_of(target))


def sent(call: Call, target: Target, random_id: int | None, message: StoredMessage,
         update: Any) -> TLObject:
    """The result of a method that made one message: its id for the random_id, and it."""
    return updates_result(call, target, [types.UpdateMessageID(message.id, random_id or 0),
                                         update])


@_handles(functions.messages.SendMessageRequest)
def _send_message(call: Call, request: Any) -> TLObject:
    me = call.me()
    text = _check_text(request.message)
    target = resolve_peer(call, request.peer)
    message, update = call.world.send(
        me, target, text, reply_to_msg_id=reply_id(request.reply_to), origin=call.connection,
        entities=request.entities or None, reply_markup=request.reply_markup,
    )
    if isinstance(target, Account):
        return types.UpdateShortSentMessage(
            id=message.id, pts=message.pts, pts_count=1, date=message.date, out=True,
            entities=request.entities or None,
        )
    return sent(call, target, request.random_id, message, update)


@_handles(functions.messages.EditMessageRequest)
def _edit_message(call: Call, request: Any) -> TLObject:
    me = call.me()
    target = resolve_peer(call, request.peer)
    changes: dict[str, Any] = {"reply_markup": request.reply_markup}
    if request.message is not None:
        changes["text"] = _check_text(request.message, allow_empty=request.media is not None)
        changes["entities"] = request.entities or None
    if request.media is not None:
        from ._methods_files import stored_file

        changes["media"] = stored_file(call, request.media).as_media()
    update = call.world.edit(me, target, request.id, origin=call.connection, **changes)
    return updates_result(call, target, [update])


@_handles(functions.messages.DeleteMessagesRequest)
def _delete_messages(call: Call, request: Any) -> TLObject:
    me = call.me()
    pts, count = call.world.delete(me, list(request.id), revoke=bool(request.revoke),
                                   origin=call.connection)
    return types.messages.AffectedMessages(pts=pts, pts_count=count)


@_handles(functions.channels.DeleteMessagesRequest)
def _delete_channel_messages(call: Call, request: Any) -> TLObject:
    chat = resolve_channel(call, request.channel)
    pts, count = call.world.delete_in_channel(call.me(), chat, list(request.id),
                                              origin=call.connection)
    return types.messages.AffectedMessages(pts=pts, pts_count=count)


@_handles(functions.messages.ForwardMessagesRequest)
def _forward_messages(call: Call, request: Any) -> TLObject:
    me = call.me()
    source = resolve_peer(call, request.from_peer)
    target = resolve_peer(call, request.to_peer)
    random_ids = list(request.random_id or [0] * len(request.id))
    if len(random_ids) != len(request.id):
        raise RpcFailure(400, "RANDOM_ID_INVALID")
    updates: list[Any] = []
    for message_id, random_id in zip(request.id, random_ids, strict=True):
        original = call.world.view(me, source, message_id)
        if original.action is not None:
            raise RpcFailure(400, "MESSAGE_ID_INVALID")
        header = types.MessageFwdHeader(
            date=original.date,
            from_id=(source.peer if original.post and isinstance(source, Chat)
                     else types.PeerUser(original.sender_id)),
            channel_post=original.id if original.post else None,
        )
        message, update = call.world.send(
            me, target, original.text, origin=call.connection, entities=original.entities,
            media=original.media, fwd_from=None if request.drop_author else header,
        )
        updates += [types.UpdateMessageID(message.id, random_id), update]
    return updates_result(call, target, updates)


@_handles(functions.messages.UpdatePinnedMessageRequest)
def _update_pinned_message(call: Call, request: Any) -> TLObject:
    target = resolve_peer(call, request.peer)
    update = call.world.pin(call.me(), target, request.id, not request.unpin,
                            origin=call.connection)
    return updates_result(call, target, [update])


@_handles(functions.messages.SetTypingRequest)
def _set_typing(call: Call, request: Any) -> bytes:
    me = call.me()
    target = resolve_peer(call, request.peer)
    if isinstance(target, Account):
        if target is not me:
            call.world.push_to(target, types.UpdateUserTyping(me.id, request.action), [me])
        return BOOL_TRUE
    if target.is_channel:
        update: Any = types.UpdateChannelUserTyping(target.id, types.PeerUser(me.id),
                                                    request.action)
    else:
        update = types.UpdateChatUserTyping(target.id, types.PeerUser(me.id), request.action)
    for member_id in target.members:
        if member_id != me.id:
            call.world.push_to(call.world.accounts[member_id], update, [me], [target])
    return BOOL_TRUE


# --- reading --------------------------------------------------------------------------------


def _messages_result(call: Call, found: list[Any], chats: list[Chat],
                     senders: set[int]) -> TLObject:
    me = call.me()
    accounts = call.world.accounts
    return types.messages.Messages(
        messages=found, topics=[], chats=[c.as_tl(me) for c in chats],
        users=[accounts[i].as_user(me) for i in sorted(senders | {me.id}) if i in accounts],
    )


def _related(call: Call, messages: list[StoredMessage]) -> tuple[list[Chat], set[int]]:
    chats = {m.peer_id: call.world.chats[m.peer_id] for m in messages
             if not isinstance(m.peer, types.PeerUser) and m.peer_id in call.world.chats}
    senders = {m.sender_id for m in messages}
    senders |= {m.peer_id for m in messages if isinstance(m.peer, types.PeerUser)}
    return list(chats.values()), senders


@_handles(functions.messages.GetMessagesRequest)
def _get_messages(call: Call, request: Any) -> TLObject:
    box = call.me().box
    return _pick(call, request.id, box.by_id)


@_handles(functions.channels.GetMessagesRequest)
def _get_channel_messages(call: Call, request: Any) -> TLObject:
    chat = resolve_channel(call, request.channel)
    me = call.me()
    visible = {i: m for i, m in chat.channel_box().by_id.items() if me.id not in m.hidden_from}
    return _pick(call, request.id, visible, chat)


def _pick(call: Call, wanted: list[Any], by_id: dict[int, StoredMessage],
          channel: Chat | None = None) -> TLObject:
    me = call.me()
    found: list[Any] = []
    kept: list[StoredMessage] = []
    for item in wanted:
        message_id = getattr(item, "id", None)
        if isinstance(item, types.InputMessageReplyTo):
            replied = by_id.get(item.id)
            message_id = replied.reply_to_msg_id if replied is not None else None
        message = by_id.get(message_id) if message_id is not None else None
        if message is None:
            found.append(types.MessageEmpty(id=message_id or 0))
        else:
            found.append(message.as_tl(me.id if channel else None))
            kept.append(message)
    chats, senders = _related(call, kept)
    if channel is not None and channel not in chats:
        chats.append(channel)
    return _messages_result(call, found, chats, senders)


@_handles(functions.messages.GetHistoryRequest)
def _get_history(call: Call, request: Any) -> TLObject:
    me = call.not_a_bot()
    target = resolve_peer(call, request.peer)
    if isinstance(target, Chat) and target.is_channel:
        messages = [m for m in target.channel_box().messages if me.id not in m.hidden_from]
        viewer: int | None = me.id
    else:
        peer = types.PeerUser(target.id) if isinstance(target, Account) else target.peer
        messages = [m for m in me.box.messages if m.peer == peer]
        viewer = None
    messages.reverse()
    if request.offset_id:
        messages = [m for m in messages if m.id < request.offset_id]
    if request.max_id:
        messages = [m for m in messages if m.id < request.max_id]
    if request.min_id:
        messages = [m for m in messages if m.id > request.min_id]
    messages = messages[max(request.add_offset, 0):][: max(request.limit, 1)]
    chats, senders = _related(call, messages)
    if isinstance(target, Chat) and target not in chats:
        chats.append(target)
    if isinstance(target, Account):
        senders.add(target.id)
    return _messages_result(call, [m.as_tl(viewer) for m in messages], chats, senders)


@_handles(functions.messages.GetDialogsRequest)
def _get_dialogs(call: Call, request: Any) -> TLObject:
    """Every conversation at once, newest first (so Telethon stops after one page)."""
    me = call.not_a_bot()
    latest: dict[tuple[type, int], tuple[StoredMessage, int | None]] = {}
    for message in me.box.messages:
        latest[(type(message.peer), message.peer_id)] = (message, None)
    for chat in call.world.chats.values():
        if chat.is_channel and me.id in chat.members:
            box = chat.channel_box()
            visible = [m for m in box.messages if me.id not in m.hidden_from]
            if visible:
                latest[(types.PeerChannel, chat.id)] = (visible[-1], box.pts)
    newest_first = sorted(latest.values(), key=lambda item: item[0].key, reverse=True)
    messages = [m for m, _ in newest_first]
    chats, senders = _related(call, messages)
    accounts = call.world.accounts
    return types.messages.Dialogs(
        dialogs=[
            types.Dialog(
                peer=m.peer, top_message=m.id, read_inbox_max_id=m.id, read_outbox_max_id=m.id,
                unread_count=0, unread_mentions_count=0, unread_reactions_count=0,
                unread_poll_votes_count=0, notify_settings=types.PeerNotifySettings(), pts=pts,
            )
            for m, pts in newest_first
        ],
        messages=[m.as_tl(me.id if pts is not None else None) for m, pts in newest_first],
        chats=[c.as_tl(me) for c in chats],
        users=[accounts[i].as_user(me) for i in sorted(senders | {me.id}) if i in accounts],
    )


@_handles(functions.messages.ReadHistoryRequest)
def _read_history(call: Call, request: Any) -> TLObject:
    # Read state is not modelled: nothing changes, so the pts does not move.
    resolve_peer(call, request.peer)
    return types.messages.AffectedMessages(pts=call.me().box.pts, pts_count=0)


@_handles(functions.channels.ReadHistoryRequest)
def _read_channel_history(call: Call, request: Any) -> bytes:
    resolve_channel(call, request.channel)
    return BOOL_TRUE


# --- inline buttons -------------------------------------------------------------------------


@_handles(functions.messages.GetBotCallbackAnswerRequest)
async def _get_bot_callback_answer(call: Call, request: Any) -> TLObject:
    me = call.not_a_bot()
    target = resolve_peer(call, request.peer)
    answer: TLObject = await call.world.press_button(me, target, request.msg_id,
                                                     request.data or b"")
    return answer


@_handles(functions.messages.SetBotCallbackAnswerRequest)
def _set_bot_callback_answer(call: Call, request: Any) -> bytes:
    if not call.me().is_bot:
        raise RpcFailure(400, "USER_BOT_REQUIRED")
    call.world.answer_callback(request.query_id, types.messages.BotCallbackAnswer(
        cache_time=request.cache_time, alert=request.alert, message=request.message,
        url=request.url, has_url=bool(request.url) or None,
    ))
    return BOOL_TRUE


# --- update state ---------------------------------------------------------------------------


def state_of(me: Account) -> TLObject:
    """The account's update state: its box's pts (no qts or seq in this server)."""
    return types.updates.State(pts=me.box.pts, qts=0, date=now(), seq=0, unread_count=0)


@_handles(functions.updates.GetStateRequest)
def _get_state(call: Call, request: Any) -> TLObject:
    return state_of(call.me())


@_handles(functions.updates.GetDifferenceRequest)
def _get_difference(call: Call, request: Any) -> TLObject:
    me = call.me()
    result: TLObject = call.world.difference(me, request.pts, request.date, state_of(me))
    return result


@_handles(functions.updates.GetChannelDifferenceRequest)
def _get_channel_difference(call: Call, request: Any) -> TLObject:
    chat = resolve_channel(call, request.channel)
    me = call.me()
    if me.id not in chat.members:
        raise RpcFailure(400, "CHANNEL_PRIVATE")
    result: TLObject = call.world.channel_difference(me, chat, request.pts, request.limit)
    return result
