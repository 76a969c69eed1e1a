"""Files: what users send (photos in several sizes, documents), what the bot uploads, getFile
and downloads.

Plays the cloud Bot API's file rules (telegram-ptb.md A4; bot-api-wire.md "getFile"): photos are
recompressed to at most 1280 px with smaller sizes first, ``getFile`` answers a relative
``file_path`` and refuses files over 20 MB ("file is too big"), sendPhoto takes at most 10 MB
with w+h ≤ 10000 and a side ratio ≤ 20, documents at most 50 MB.
"""

from __future__ import annotations

import io
import mimetypes
import secrets
from urllib.parse import unquote

from aiohttp import web
from PIL import Image, UnidentifiedImageError

from tests.doubles.telegram.faults import Faults
from tests.doubles.telegram.params import opt_str
from tests.doubles.telegram.records import (
    JSON,
    MAX_DOWNLOAD_SIZE,
    MAX_FILE_UPLOAD,
    MAX_PHOTO_UPLOAD,
    PHOTO_SIDE,
    ApiError,
    StoredFile,
    UploadedFile,
    bad_request,
)


def image_size(data: bytes) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def jpeg_scaled(data: bytes, side: int) -> tuple[bytes, int, int]:
    """A JPEG of the image whose longer side is at most `side`."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (side, side))
        scaled = image.convert("RGB")
        scaled.thumbnail((side, side))
        buffer = io.BytesIO()
        scaled.save(buffer, "JPEG", quality=80)
        return buffer.getvalue(), scaled.width, scaled.height


def jpeg(width: int, height: int, color: tuple[int, int, int] = (200, 120, 80)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "JPEG")
    return buffer.getvalue()


def webp(side: int = 512) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (side, side), (30, 160, 90, 255)).save(buffer, "WEBP")
    return buffer.getvalue()


class Files(Faults):
    """The files of the simulated world and the Bot API methods that serve them."""

    def add_file(
        self,
        data: bytes,
        *,
        kind: str = "document",
        file_name: str | None = None,
        mime_type: str | None = None,
        file_size: int | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> StoredFile:
        """Registers a file; `file_size` can exceed len(data) to fake a huge file."""
        self._file_counter += 1
        number = self._file_counter
        folder = {"photo": "photos", "voice": "voice", "video_note": "video_notes"}.get(
            kind, f"{kind}s"
        )
        extension = ""
        if file_name and "." in file_name:
            extension = file_name.rsplit(".", 1)[1]
        elif mime_type:
            extension = (mimetypes.guess_extension(mime_type) or "").lstrip(".")
        if kind == "photo":
            extension = "jpg"
        path = f"{folder}/file_{number}" + (f".{extension}" if extension else "")
        stored = StoredFile(
            file_id=f"BQACAgIAAxk{kind[:2].upper()}{number:05d}{secrets.token_hex(8)}",
            file_unique_id=f"AgAD{number:05d}{secrets.token_hex(3)}",
            kind=kind,
            data=data,
            file_size=len(data) if file_size is None else file_size,
            file_path=path,
            mime_type=mime_type,
            file_name=file_name,
            width=width,
            height=height,
        )
        self.files[stored.file_id] = stored
        return stored

    def add_large_file(
        self,
        file_size: int = MAX_DOWNLOAD_SIZE + 1,
        *,
        file_name: str = "huge.jpg",
        mime_type: str = "image/jpeg",
    ) -> StoredFile:
        """A document that claims `file_size` bytes without allocating them."""
        return self.add_file(
            jpeg(64, 64), file_name=file_name, mime_type=mime_type, file_size=file_size
        )

    def _photo_sizes(self, data: bytes, *, max_side: int | None = None) -> list[JSON]:
        """Registers the PhotoSize files of a photo, smallest first."""
        size = image_size(data)
        if size is None:
            raise ValueError("photo bytes are not an image Pillow can read")
        width, height = size
        longest = max(width, height)
        variants: list[tuple[bytes, int, int]] = []
        for side in (90, 320, 800):
            if side < longest and (max_side is None or side < max_side):
                variants.append(jpeg_scaled(data, side))
        if max_side is not None and longest > max_side:
            variants.append(jpeg_scaled(data, max_side))
        else:
            if not variants:  # tiny image: Telegram still sends a thumbnail
                variants.append(jpeg_scaled(data, longest))
            variants.append((data, width, height))
        sizes: list[JSON] = []
        files: list[StoredFile] = []
        for blob, w, h in variants:
            stored = self.add_file(blob, kind="photo", mime_type="image/jpeg", width=w, height=h)
            files.append(stored)
            sizes.append(
                {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.file_unique_id,
                    "width": w,
                    "height": h,
                    "file_size": stored.file_size,
                }
            )
        for stored in files:
            stored.photo_sizes = sizes
        return sizes

    def _input_file(
        self, params: JSON, key: str, kind: str
    ) -> tuple[bytes, StoredFile | None, UploadedFile | None]:
        """The bytes of an uploaded file part or an existing file_id."""
        value = params.get(key)
        if isinstance(value, str) and value.startswith("attach://"):
            value = params.get(value.removeprefix("attach://"))
        if isinstance(value, UploadedFile):
            if not value.data:
                raise bad_request("file must be non-empty")
            return value.data, None, value
        if not value:
            raise bad_request(f"there is no {key} in the request")
        stored = self.files.get(str(value))
        if stored is None:
            raise bad_request("wrong file identifier/HTTP URL specified")
        if kind == "photo" and stored.kind != "photo":
            raise bad_request("type of file mismatch")
        return stored.data, stored, None

    def _photo_content(self, params: JSON, key: str) -> tuple[JSON, JSON]:
        data, stored, upload = self._input_file(params, key, "photo")
        if stored is not None and stored.photo_sizes is not None:
            sizes = stored.photo_sizes
        else:
            if len(data) > MAX_PHOTO_UPLOAD:
                raise bad_request("PHOTO_SAVE_FILE_INVALID")
            size = image_size(data)
            if size is None:
                raise bad_request("IMAGE_PROCESS_FAILED")
            width, height = size
            if width + height > 10_000 or max(width, height) > 20 * min(width, height):
                raise bad_request("PHOTO_INVALID_DIMENSIONS")
            sizes = self._photo_sizes(data, max_side=PHOTO_SIDE)
        extra: JSON = {
            "photo": data,
            "file_id": sizes[-1]["file_id"],
            "file_name": upload.filename if upload else None,
            "mime_type": upload.content_type if upload else "image/jpeg",
        }
        return {"photo": sizes}, extra

    def _document_content(self, params: JSON, key: str) -> tuple[JSON, JSON]:
        data, stored, upload = self._input_file(params, key, "document")
        if stored is None:
            assert upload is not None
            if len(data) > MAX_FILE_UPLOAD:
                raise ApiError(413, "Request Entity Too Large")
            name = upload.filename or "file"
            mime = (
                upload.content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
            )
            stored = self.add_file(data, file_name=name, mime_type=mime)
        document: JSON = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
        }
        if stored.file_name:
            document["file_name"] = stored.file_name
        if stored.mime_type:
            document["mime_type"] = stored.mime_type
        extra: JSON = {
            "document": data,
            "file_id": stored.file_id,
            "file_name": stored.file_name,
            "mime_type": stored.mime_type,
        }
        return {"document": document}, extra

    async def _api_getFile(self, params: JSON) -> JSON:
        file_id = opt_str(params, "file_id")
        if file_id is None:
            raise bad_request("file_id is empty")
        stored = self.files.get(file_id)
        if stored is None:
            raise bad_request("invalid file_id")
        if stored.file_size > MAX_DOWNLOAD_SIZE:
            raise bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
            "file_path": stored.file_path,
        }

    async def _handle_download(self, request: web.Request) -> web.StreamResponse:
        if self._check_token(request.match_info["token"]) is not None:
            return json_response({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        path = unquote(request.match_info["path"])
        stored = next((f for f in self.files.values() if f.file_path == path), None)
        if stored is None:
            return json_response({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        self.downloads.append(path)
        self._notify()
        return web.Response(
            body=stored.data, content_type=stored.mime_type or "application/octet-stream"
        )


def json_response(body: JSON, status: int) -> web.Response:
    return web.json_response(body, status=status)
