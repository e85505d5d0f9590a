"""RPC methods of files, kept in memory: upload parts, send media, download."""

from __future__ import annotations

import secrets
from typing import Any

from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject

from ._methods import BOOL_TRUE, Call, _handles, resolve_peer
from ._methods_messages import _check_text, reply_id, sent
from ._world import RpcFailure, StoredFile, now

_MAX_PART = 512 * 1024


def _save_part(call: Call, file_id: int, part: int, data: bytes) -> bytes:
    if len(data) > _MAX_PART:
        raise RpcFailure(400, "FILE_PART_TOO_BIG")
    if part < 0:
        raise RpcFailure(400, "FILE_PART_INVALID")
    call.world.uploads.setdefault((call.me().id, file_id), {})[part] = data
    return BOOL_TRUE


@_handles(functions.upload.SaveFilePartRequest)
def _save_file_part(call: Call, request: Any) -> bytes:
    return _save_part(call, request.file_id, request.file_part, request.bytes)


@_handles(functions.upload.SaveBigFilePartRequest)
def _save_big_file_part(call: Call, request: Any) -> bytes:
    return _save_part(call, request.file_id, request.file_part, request.bytes)


def _uploaded(call: Call, input_file: Any) -> tuple[bytes, str]:
    """The bytes of an ``InputFile``/``InputFileBig`` whose parts were all uploaded."""
    if not isinstance(input_file, (types.InputFile, types.InputFileBig)):
        raise RpcFailure(400, "FILE_PARTS_INVALID")
    parts = call.world.uploads.pop((call.me().id, input_file.id), {})
    if sorted(parts) != list(range(input_file.parts)):
        raise RpcFailure(400, f"FILE_PART_{len(parts)}_MISSING")
    return b"".join(parts[i] for i in range(input_file.parts)), input_file.name


def stored_file(call: Call, media: Any) -> StoredFile:
    """The file an ``InputMedia`` uploads or names (photos and documents)."""
    world = call.world
    if isinstance(media, (types.InputMediaPhoto, types.InputMediaDocument)):
        found = world.files.get(getattr(media.id, "id", 0))
        if found is None or found.access_hash != media.id.access_hash:
            raise RpcFailure(400, "MEDIA_INVALID")
        return found
    if isinstance(media, types.InputMediaUploadedPhoto):
        data, name = _uploaded(call, media.file)
        mime, attributes, photo = "image/jpeg", [], True
    elif isinstance(media, types.InputMediaUploadedDocument):
        data, name = _uploaded(call, media.file)
        mime, attributes, photo = media.mime_type, list(media.attributes), False
        if not any(isinstance(a, types.DocumentAttributeFilename) for a in attributes):
            attributes.append(types.DocumentAttributeFilename(name))
    else:
        raise RpcFailure(400, "MEDIA_INVALID")
    file = StoredFile(
        id=secrets.randbits(63), access_hash=secrets.randbits(63), data=data, photo=photo,
        mime_type=mime, name=name, attributes=attributes, date=now(), dc_id=call.dc_id,
    )
    world.files[file.id] = file
    return file


@_handles(functions.messages.SendMediaRequest)
def _send_media(call: Call, request: Any) -> TLObject:
    me = call.me()
    target = resolve_peer(call, request.peer)
    caption = _check_text(request.message, allow_empty=True)
    file = stored_file(call, request.media)
    message, update = call.world.send(
        me, target, caption, reply_to_msg_id=reply_id(request.reply_to), origin=call.connection,
        entities=request.entities or None, reply_markup=request.reply_markup,
        media=file.as_media(),
    )
    return sent(call, target, request.random_id, message, update)


@_handles(functions.upload.GetFileRequest)
def _get_file(call: Call, request: Any) -> TLObject:
    location = request.location
    if not isinstance(location, (types.InputDocumentFileLocation, types.InputPhotoFileLocation)):
        raise RpcFailure(400, "LOCATION_INVALID")
    file = call.world.files.get(location.id)
    if file is None or file.access_hash != location.access_hash:
        raise RpcFailure(400, "LOCATION_INVALID")
    if request.offset < 0 or request.limit <= 0:
        raise RpcFailure(400, "LIMIT_INVALID")
    return types.upload.File(
        type=types.storage.FileUnknown(), mtime=0,
        bytes=file.data[request.offset: request.offset + request.limit],
    )
