"""RPC methods of groups, supergroups and channels: create, invite, members, admins."""

from __future__ import annotations

from typing import Any

from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject

from ._accounts import Account
from ._chats import ADMIN_RIGHTS, Chat
from ._methods import Call, _handles, resolve_channel, resolve_user
from ._world import RpcFailure


def _members(call: Call, users: list[Any]) -> list[Account]:
    return [resolve_user(call, u, "USER_ID_INVALID") for u in users]


def _invited(call: Call, chat: Chat, updates: list[Any]) -> TLObject:
    me = call.me()
    members = [call.world.accounts[m] for m in chat.members]
    return types.messages.InvitedUsers(
        updates=call.world.updates_for(me, updates, members, [chat]), missing_invitees=[]
    )


def _basic_group(call: Call, chat_id: int) -> Chat:
    return call.world.chat_of(call.me(), chat_id, channel=False)


@_handles(functions.messages.CreateChatRequest)
def _create_chat(call: Call, request: Any) -> TLObject:
    me = call.not_a_bot()
    chat, update = call.world.create_chat(request.title, me, _members(call, request.users),
                                          "group", origin=call.connection)
    return _invited(call, chat, [update])


@_handles(functions.messages.AddChatUserRequest)
def _add_chat_user(call: Call, request: Any) -> TLObject:
    chat = _basic_group(call, request.chat_id)
    user = resolve_user(call, request.user_id, "USER_ID_INVALID")
    if user.id in chat.members:
        raise RpcFailure(400, "USER_ALREADY_PARTICIPANT")
    update = call.world.add_members(chat, call.me(), [user], origin=call.connection)
    return _invited(call, chat, [update] if update is not None else [])


@_handles(functions.messages.DeleteChatUserRequest)
def _delete_chat_user(call: Call, request: Any) -> TLObject:
    me = call.me()
    chat = _basic_group(call, request.chat_id)
    user = resolve_user(call, request.user_id, "USER_ID_INVALID")
    update = call.world.remove_member(chat, me, user, origin=call.connection)
    return call.world.updates_for(me, [update] if update is not None else [], [user], [chat])


@_handles(functions.messages.GetChatsRequest)
def _get_chats(call: Call, request: Any) -> TLObject:
    me = call.me()
    return types.messages.Chats(chats=[_basic_group(call, i).as_tl(me) for i in request.id])


@_handles(functions.messages.GetFullChatRequest)
def _get_full_chat(call: Call, request: Any) -> TLObject:
    me = call.me()
    chat = _basic_group(call, request.chat_id)
    participants: list[Any] = [
        types.ChatParticipantCreator(user_id=m) if m == chat.creator_id
        else types.ChatParticipant(user_id=m, inviter_id=chat.creator_id, date=joined)
        for m, joined in chat.members.items()
    ]
    return types.messages.ChatFull(
        full_chat=types.ChatFull(
            id=chat.id, about="",
            participants=types.ChatParticipants(chat.id, participants, chat.version),
            notify_settings=types.PeerNotifySettings(),
        ),
        chats=[chat.as_tl(me)],
        users=[call.world.accounts[m].as_user(me) for m in chat.members],
    )


@_handles(functions.channels.CreateChannelRequest)
def _create_channel(call: Call, request: Any) -> TLObject:
    me = call.not_a_bot()
    kind = "supergroup" if request.megagroup else "channel"
    chat, update = call.world.create_chat(request.title, me, [], kind, origin=call.connection)
    return call.world.updates_for(me, [types.UpdateChannel(chat.id), update], [me], [chat])


@_handles(functions.channels.InviteToChannelRequest)
def _invite_to_channel(call: Call, request: Any) -> TLObject:
    chat = resolve_channel(call, request.channel)
    update = call.world.add_members(chat, call.me(), _members(call, request.users),
                                    origin=call.connection)
    return _invited(call, chat, [update] if update is not None else [])


@_handles(functions.channels.EditAdminRequest)
def _edit_admin(call: Call, request: Any) -> TLObject:
    me = call.me()
    chat = resolve_channel(call, request.channel)
    user = resolve_user(call, request.user_id, "USER_ID_INVALID")
    if not chat.is_admin(me.id):
        raise RpcFailure(403, "CHAT_ADMIN_REQUIRED")
    if user.id not in chat.members:
        call.world.add_members(chat, me, [user], origin=call.connection)
    rights = request.admin_rights
    if any(v for k, v in rights.to_dict().items() if k != "_"):
        chat.admins.add(user.id)
    else:
        chat.admins.discard(user.id)
    return call.world.updates_for(me, [], [user], [chat])


@_handles(functions.channels.EditBannedRequest)
def _edit_banned(call: Call, request: Any) -> TLObject:
    me = call.me()
    chat = resolve_channel(call, request.channel)
    user = resolve_user(call, request.participant, "PARTICIPANT_ID_INVALID")
    if not chat.is_admin(me.id):
        raise RpcFailure(403, "CHAT_ADMIN_REQUIRED")
    updates = []
    # Bans are not remembered: banning from viewing removes the member, lifting it does nothing.
    if request.banned_rights.view_messages and user.id in chat.members:
        update = call.world.remove_member(chat, me, user, origin=call.connection)
        updates = [update] if update is not None else []
    return call.world.updates_for(me, updates, [user], [chat])


@_handles(functions.channels.LeaveChannelRequest)
def _leave_channel(call: Call, request: Any) -> TLObject:
    me = call.me()
    chat = resolve_channel(call, request.channel)
    update = call.world.remove_member(chat, me, me, origin=call.connection)
    return call.world.updates_for(me, [update] if update is not None else [], [], [chat])


@_handles(functions.channels.GetChannelsRequest)
def _get_channels(call: Call, request: Any) -> TLObject:
    me = call.me()
    return types.messages.Chats(chats=[resolve_channel(call, c).as_tl(me) for c in request.id])


@_handles(functions.channels.GetFullChannelRequest)
def _get_full_channel(call: Call, request: Any) -> TLObject:
    me = call.me()
    chat = resolve_channel(call, request.channel)
    return types.messages.ChatFull(
        full_chat=types.ChannelFull(
            id=chat.id, about="", read_inbox_max_id=0, read_outbox_max_id=0, unread_count=0,
            chat_photo=types.PhotoEmpty(id=0), notify_settings=types.PeerNotifySettings(),
            bot_info=[], pts=chat.channel_box().pts, participants_count=len(chat.members),
            admins_count=len(chat.admins) + 1, can_view_participants=True,
        ),
        chats=[chat.as_tl(me)],
        users=[],
    )


def _participant(chat: Chat, member_id: int, me: Account) -> Any:
    joined = chat.members[member_id]
    if member_id == chat.creator_id:
        return types.ChannelParticipantCreator(user_id=member_id, admin_rights=ADMIN_RIGHTS)
    if member_id in chat.admins:
        return types.ChannelParticipantAdmin(
            user_id=member_id, promoted_by=chat.creator_id, date=joined,
            admin_rights=ADMIN_RIGHTS, is_self=member_id == me.id or None,
        )
    if member_id == me.id:
        return types.ChannelParticipantSelf(user_id=member_id, inviter_id=chat.creator_id,
                                            date=joined)
    return types.ChannelParticipant(user_id=member_id, date=joined)


@_handles(functions.channels.GetParticipantsRequest)
def _get_participants(call: Call, request: Any) -> TLObject:
    me = call.me()
    chat = resolve_channel(call, request.channel)
    if chat.broadcast and not chat.is_admin(me.id):
        raise RpcFailure(403, "CHAT_ADMIN_REQUIRED")
    accounts = call.world.accounts
    members = [accounts[m] for m in chat.members]
    wanted = request.filter
    if isinstance(wanted, types.ChannelParticipantsAdmins):
        members = [m for m in members if chat.is_admin(m.id)]
    elif isinstance(wanted, types.ChannelParticipantsBots):
        members = [m for m in members if m.is_bot]
    elif isinstance(wanted, types.ChannelParticipantsSearch) and wanted.q:
        needle = wanted.q.lower()
        members = [m for m in members if needle in " ".join(
            filter(None, (m.first_name, m.last_name, m.username))).lower()]
    page = members[max(request.offset, 0):][: max(request.limit, 0)]
    return types.channels.ChannelParticipants(
        count=len(members),
        participants=[_participant(chat, m.id, me) for m in page],
        chats=[],
        users=[m.as_user(me) for m in page],
    )


@_handles(functions.channels.GetParticipantRequest)
def _get_participant(call: Call, request: Any) -> TLObject:
    me = call.me()
    chat = resolve_channel(call, request.channel)
    user = resolve_user(call, request.participant, "PARTICIPANT_ID_INVALID")
    if user.id not in chat.members:
        raise RpcFailure(400, "USER_NOT_PARTICIPANT")
    return types.channels.ChannelParticipant(
        participant=_participant(chat, user.id, me), chats=[chat.as_tl(me)],
        users=[user.as_user(me)],
    )
