"""The RPC methods the fake Telegram answers, one function per TL method.

Each handler takes the :class:`Call` (who is asking, on which DC, with which key) and the
parsed request, and returns a TL object (or bytes already serialized, for bare vectors), or
an awaitable of one (for a method that waits, like a callback query), or raises
:class:`RpcFailure`. Methods not listed here answer 400 INPUT_METHOD_INVALID, and each is
logged once, by name, as a warning: a test that fails on one says why. The handlers of
messages, chats and files live in sibling modules, registered on import (at the end).
"""

from __future__ import annotations

import datetime
import inspect
import logging
import os
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject

from . import _mtproto, _srp
from ._accounts import Account
from ._chats import Chat
from ._world import AuthKeyRecord, LiveConnection, RpcFailure, Target, World, normalize_phone, now

_log = logging.getLogger("tgsession.testing")

BOOL_TRUE = struct.pack("<I", 0x997275B5)

_WRAPPERS = (
    functions.InvokeWithLayerRequest,
    functions.InitConnectionRequest,
    functions.InvokeWithoutUpdatesRequest,
    functions.InvokeAfterMsgRequest,
    functions.InvokeAfterMsgsRequest,
)


@dataclass
class Call:
    """One request's context: the server state, the DC, the auth key and the connection."""

    world: World
    dc_id: int
    record: AuthKeyRecord
    connection: LiveConnection

    @property
    def account(self) -> Account | None:
        """The account the key is signed in as, if any."""
        if self.record.account_id is None:
            return None
        return self.world.accounts.get(self.record.account_id)

    def me(self) -> Account:
        """The signed-in account; 401 AUTH_KEY_UNREGISTERED when the key is not signed in."""
        account = self.account
        if account is None:
            raise RpcFailure(401, "AUTH_KEY_UNREGISTERED")
        return account

    def not_a_bot(self) -> Account:
        """The signed-in account, which must be a user: bots get 400 BOT_METHOD_INVALID."""
        me = self.me()
        if me.is_bot:
            raise RpcFailure(400, "BOT_METHOD_INVALID")
        return me

    def authorize(self, account: Account) -> types.auth.Authorization:
        self.record.account_id = account.id
        self.record.pending_password_id = None
        return types.auth.Authorization(user=account.as_user(account))


Handler = Callable[[Call, Any], "TLObject | bytes | Awaitable[TLObject | bytes]"]
_HANDLERS: dict[type, tuple[Handler, bool]] = {}
_H = TypeVar("_H", bound=Handler)


def _handles(request_type: type, *, needs_auth: bool = True) -> Callable[[_H], _H]:
    def register(handler: _H) -> _H:
        _HANDLERS[request_type] = (handler, needs_auth)
        return handler

    return register


def method_name(request: object) -> str:
    """The TL name of a request, e.g. ``"auth.sendCode"`` or ``"invokeWithLayer"``."""
    cls = type(request)
    name = cls.__name__.removesuffix("Request")
    name = name[:1].lower() + name[1:]
    namespace = cls.__module__.rpartition("functions")[2].lstrip(".")
    return f"{namespace}.{name}" if namespace else name


def invoke(call: Call, request: Any) -> bytes | Awaitable[bytes]:
    """Run ``request`` (unwrapping invokeWithLayer/initConnection & co.) and serialize the result
    (or return an awaitable of it, for a method that waits).

    Counts the call, applies injected failures, and raises :class:`RpcFailure` for errors.
    """
    name = method_name(request)
    call.world.counts[name] += 1
    failure = call.world.take_failure(name)
    if failure is not None:
        raise failure
    if call.record.burned:
        raise RpcFailure(406, "AUTH_KEY_DUPLICATED")
    if isinstance(request, _WRAPPERS):
        return invoke(call, request.query)
    entry = _HANDLERS.get(type(request))
    if entry is None:
        if name not in call.world.unimplemented:
            call.world.unimplemented.add(name)
            _log.warning("the fake Telegram does not implement %s; it answers "
                         "400 INPUT_METHOD_INVALID", name)
        raise RpcFailure(400, "INPUT_METHOD_INVALID")
    handler, needs_auth = entry
    if needs_auth:
        call.me()
    result = handler(call, request)
    if inspect.isawaitable(result):
        return _serialized(result)
    return result if isinstance(result, bytes) else bytes(result)


async def _serialized(pending: Awaitable[TLObject | bytes]) -> bytes:
    result = await pending
    return result if isinstance(result, bytes) else bytes(result)


# --- resolving input peers ------------------------------------------------------------------

_SELF_TYPES = (types.InputUserSelf, types.InputPeerSelf)
_USER_TYPES = (types.InputUser, types.InputPeerUser)


_CHANNEL_TYPES = (types.InputChannel, types.InputPeerChannel)


def resolve_user(call: Call, peer: Any, error: str = "PEER_ID_INVALID") -> Account:
    """The account an ``InputUser``/``InputPeerUser`` names; the access hash must match
    (a bot may pass 0, as Telethon does for users it has no hash of)."""
    if isinstance(peer, _SELF_TYPES):
        return call.me()
    if isinstance(peer, _USER_TYPES):
        account = call.world.accounts.get(peer.user_id)
        if account is not None and (
            account.access_hash == peer.access_hash or (peer.access_hash == 0 and call.me().is_bot)
        ):
            return account
    raise RpcFailure(400, error)


_resolve_user = resolve_user


def resolve_channel(call: Call, peer: Any) -> Chat:
    """The supergroup or channel an ``InputChannel``/``InputPeerChannel`` names."""
    if not isinstance(peer, _CHANNEL_TYPES):
        raise RpcFailure(400, "CHANNEL_INVALID")
    me = call.me()
    chat = call.world.chat_of(me, peer.channel_id, channel=True)
    if chat.access_hash != peer.access_hash and not (peer.access_hash == 0 and me.is_bot):
        raise RpcFailure(400, "CHANNEL_INVALID")
    return chat


def resolve_peer(call: Call, peer: Any) -> Target:
    """The user, group or channel an input peer names (checked as Telegram checks it)."""
    if isinstance(peer, types.InputPeerChat):
        return call.world.chat_of(call.me(), peer.chat_id, channel=False)
    if isinstance(peer, _CHANNEL_TYPES):
        return resolve_channel(call, peer)
    return resolve_user(call, peer)


# --- help -----------------------------------------------------------------------------------


@_handles(functions.help.GetConfigRequest, needs_auth=False)
def _get_config(call: Call, request: Any) -> TLObject:
    date = now()
    return types.Config(
        date=date,
        expires=date + datetime.timedelta(hours=1),
        test_mode=False,
        this_dc=call.dc_id,
        dc_options=[
            types.DcOption(id=dc_id, ip_address=host, port=port)
            for dc_id, (host, port) in sorted(call.world.dc_addresses.items())
        ],
        dc_txt_domain_name="localhost",
        chat_size_max=200,
        megagroup_size_max=200000,
        forwarded_count_max=100,
        online_update_period_ms=210000,
        offline_blur_timeout_ms=5000,
        offline_idle_timeout_ms=30000,
        online_cloud_timeout_ms=300000,
        notify_cloud_delay_ms=30000,
        notify_default_delay_ms=1500,
        push_chat_period_ms=60000,
        push_chat_limit=2,
        edit_time_limit=172800,
        revoke_time_limit=2147483647,
        revoke_pm_time_limit=2147483647,
        rating_e_decay=2419200,
        stickers_recent_limit=200,
        channels_read_media_period=604800,
        call_receive_timeout_ms=20000,
        call_ring_timeout_ms=90000,
        call_connect_timeout_ms=30000,
        call_packet_timeout_ms=10000,
        me_url_prefix="https://t.me/",
        caption_length_max=1024,
        message_length_max=4096,
        webfile_dc_id=call.dc_id,
    )


@_handles(functions.help.GetNearestDcRequest, needs_auth=False)
def _get_nearest_dc(call: Call, request: Any) -> TLObject:
    return types.NearestDc(country="US", this_dc=call.dc_id, nearest_dc=call.dc_id)


# --- auth -----------------------------------------------------------------------------------


def _phone(raw: str) -> str:
    try:
        return normalize_phone(raw)
    except ValueError:
        raise RpcFailure(400, "PHONE_NUMBER_INVALID") from None


def _check_home_dc(call: Call, account: Account | None, kind: str) -> None:
    if account is not None and account.dc_id != call.dc_id:
        raise RpcFailure(303, f"{kind}_MIGRATE_{account.dc_id}")


@_handles(functions.auth.SendCodeRequest, needs_auth=False)
def _send_code(call: Call, request: Any) -> TLObject:
    phone = _phone(request.phone_number)
    account = call.world.by_phone(phone)
    _check_home_dc(call, account, "PHONE")
    pending = call.world.issue_code(phone)
    code_type = types.auth.SentCodeTypeApp(length=5) if account else types.auth.SentCodeTypeSms(5)
    return types.auth.SentCode(type=code_type, phone_code_hash=pending.phone_code_hash)


@_handles(functions.auth.ResendCodeRequest, needs_auth=False)
def _resend_code(call: Call, request: Any) -> TLObject:
    phone = _phone(request.phone_number)
    pending = call.world.pending_code(phone)
    if pending is None or pending.phone_code_hash != request.phone_code_hash:
        raise RpcFailure(400, "PHONE_CODE_EXPIRED")
    return _send_code(call, request)


@_handles(functions.auth.SignInRequest, needs_auth=False)
def _sign_in(call: Call, request: Any) -> TLObject:
    phone = _phone(request.phone_number)
    account = call.world.by_phone(phone)
    _check_home_dc(call, account, "PHONE")
    if not request.phone_code_hash:
        raise RpcFailure(400, "PHONE_CODE_HASH_EMPTY")
    if not request.phone_code:
        raise RpcFailure(400, "PHONE_CODE_EMPTY")
    pending = call.world.pending_code(phone)
    if pending is None or pending.phone_code_hash != request.phone_code_hash:
        raise RpcFailure(400, "PHONE_CODE_EXPIRED")
    if pending.code != request.phone_code:
        raise RpcFailure(400, "PHONE_CODE_INVALID")
    if account is None:
        return types.auth.AuthorizationSignUpRequired()
    call.world.consume_code(phone)
    if account.password is not None:
        call.record.pending_password_id = account.id
        raise RpcFailure(401, "SESSION_PASSWORD_NEEDED")
    return call.authorize(account)


def _password_account(call: Call) -> Account:
    pending = call.record.pending_password_id
    if pending is not None and pending in call.world.accounts:
        return call.world.accounts[pending]
    return call.me()


@_handles(functions.account.GetPasswordRequest, needs_auth=False)
def _get_password(call: Call, request: Any) -> TLObject:
    account = _password_account(call)
    common: dict[str, Any] = {
        "new_algo": _srp.new_algo(),
        "new_secure_algo": types.SecurePasswordKdfAlgoPBKDF2HMACSHA512iter100000(os.urandom(8)),
        "secure_random": os.urandom(32),
    }
    verifier = account.verifier
    if verifier is None:
        return types.account.Password(has_password=False, **common)
    srp_id, srp_b = verifier.start()
    return types.account.Password(
        has_password=True, current_algo=verifier.algo, srp_B=srp_b, srp_id=srp_id, **common
    )


@_handles(functions.auth.CheckPasswordRequest, needs_auth=False)
def _check_password(call: Call, request: Any) -> TLObject:
    if call.record.pending_password_id is None:
        if call.account is not None:
            raise RpcFailure(400, "PASSWORD_HASH_INVALID")
        raise RpcFailure(401, "AUTH_KEY_UNREGISTERED")
    account = _password_account(call)
    verifier = account.verifier
    check = request.password
    if verifier is None or not isinstance(check, types.InputCheckPasswordSRP):
        raise RpcFailure(400, "PASSWORD_HASH_INVALID")
    verdict = verifier.check(check.srp_id, check.A, check.M1)
    if verdict is None:
        raise RpcFailure(400, "SRP_ID_INVALID")
    if not verdict:
        raise RpcFailure(400, "PASSWORD_HASH_INVALID")
    return call.authorize(account)


@_handles(functions.auth.ImportBotAuthorizationRequest, needs_auth=False)
def _import_bot_authorization(call: Call, request: Any) -> TLObject:
    account = call.world.by_token(request.bot_auth_token)
    if account is None:
        raise RpcFailure(400, "ACCESS_TOKEN_INVALID")
    _check_home_dc(call, account, "USER")
    return call.authorize(account)


@_handles(functions.auth.LogOutRequest)
def _log_out(call: Call, request: Any) -> TLObject:
    call.record.account_id = None
    return types.auth.LoggedOut()


@_handles(functions.auth.ExportAuthorizationRequest)
def _export_authorization(call: Call, request: Any) -> TLObject:
    token = os.urandom(32)
    me = call.me()
    call.world.exported_authorizations[token] = me.id
    return types.auth.ExportedAuthorization(id=me.id, bytes=token)


@_handles(functions.auth.ImportAuthorizationRequest, needs_auth=False)
def _import_authorization(call: Call, request: Any) -> TLObject:
    account_id = call.world.exported_authorizations.pop(request.bytes, None)
    if account_id != request.id or account_id not in call.world.accounts:
        raise RpcFailure(400, "AUTH_BYTES_INVALID")
    return call.authorize(call.world.accounts[account_id])


# --- users and contacts ---------------------------------------------------------------------


@_handles(functions.users.GetUsersRequest)
def _get_users(call: Call, request: Any) -> bytes:
    me = call.me()
    found = []
    for wanted in request.id:
        try:
            found.append(_resolve_user(call, wanted).as_user(me))
        except RpcFailure:
            continue
    return _mtproto.vector(found)


@_handles(functions.users.GetFullUserRequest)
def _get_full_user(call: Call, request: Any) -> TLObject:
    me = call.me()
    user = _resolve_user(call, request.id, "USER_ID_INVALID")
    return types.users.UserFull(
        full_user=types.UserFull(
            id=user.id,
            settings=types.PeerSettings(),
            notify_settings=types.PeerNotifySettings(),
            common_chats_count=0,
        ),
        chats=[],
        users=[user.as_user(me)],
    )


@_handles(functions.contacts.ResolveUsernameRequest)
def _resolve_username(call: Call, request: Any) -> TLObject:
    me = call.me()
    account = call.world.by_username(request.username)
    if account is None:
        raise RpcFailure(400, "USERNAME_NOT_OCCUPIED")
    return types.contacts.ResolvedPeer(
        peer=types.PeerUser(account.id), chats=[], users=[account.as_user(me)]
    )


@_handles(functions.contacts.GetContactsRequest)
def _get_contacts(call: Call, request: Any) -> TLObject:
    me = call.not_a_bot()
    contacts = [call.world.accounts[i] for i in sorted(me.contacts)]
    return types.contacts.Contacts(
        contacts=[types.Contact(user_id=c.id, mutual=me.id in c.contacts) for c in contacts],
        saved_count=0,
        users=[c.as_user(me) for c in contacts],
    )


@_handles(functions.account.UpdateStatusRequest)
def _update_status(call: Call, request: Any) -> bytes:
    return BOOL_TRUE


@_handles(functions.contacts.ImportContactsRequest)
def _import_contacts(call: Call, request: Any) -> TLObject:
    me = call.not_a_bot()
    imported, users = [], []
    for contact in request.contacts:
        try:
            account = call.world.by_phone(normalize_phone(contact.phone))
        except ValueError:
            account = None
        if account is None or account is me:
            continue
        me.contacts.add(account.id)
        imported.append(types.ImportedContact(user_id=account.id, client_id=contact.client_id))
        users.append(account.as_user(me))
    return types.contacts.ImportedContacts(imported=imported, popular_invites=[],
                                           retry_contacts=[], users=users)


@_handles(functions.bots.SetBotCommandsRequest)
def _set_bot_commands(call: Call, request: Any) -> bytes:
    me = call.me()
    if not me.is_bot:
        raise RpcFailure(400, "USER_BOT_REQUIRED")
    me.bot_commands = list(request.commands)
    return BOOL_TRUE


@_handles(functions.bots.GetBotCommandsRequest)
def _get_bot_commands(call: Call, request: Any) -> bytes:
    me = call.me()
    if not me.is_bot:
        raise RpcFailure(400, "USER_BOT_REQUIRED")
    return _mtproto.vector(me.bot_commands)


@_handles(functions.bots.ResetBotCommandsRequest)
def _reset_bot_commands(call: Call, request: Any) -> bytes:
    me = call.me()
    if not me.is_bot:
        raise RpcFailure(400, "USER_BOT_REQUIRED")
    me.bot_commands = []
    return BOOL_TRUE


# The other handlers register themselves when imported.
from . import _methods_chats, _methods_files, _methods_messages  # noqa: E402, F401
