"""``instructx2x serve``: the editor as a local web page and a documented HTTP API.

    instructx2x serve --model results/model/pipeline [--masks results/masks/pseudo_masks.npz]
        [--gallery results/instructions/instructions.parquet] [--host 127.0.0.1] [--port 7860]

One process loads the model once (``editor.Editor``, the code ``instructx2x edit`` runs) and serves:

  GET  /                    the page: upload (PNG/JPG/DICOM) or pick a demo test input, type an
                            instruction (live preview of the parsed operations), draw a mask, run
  GET  /api/info            model hash, defaults, limits, gallery entries
  GET  /api/parse?instruction=...   parsed operations (op, finding, side, zone, severity) + warning
  POST /api/decode          multipart ``image``: the upload as the editor reads it (PNG), or why not
  GET  /api/gallery/<i>.png a gallery input (images chosen at start-up from --gallery, never by a request)
  POST /api/edit            multipart: ``image`` file, ``settings`` JSON (instruction, seed, steps, tau,
                            t_rel, rse, image_guidance_scale, guidance_scale), optional ``user_mask`` file;
                            waits for the edit and answers {"record": {...}, "images": {"edited",
                            "guidance", "mask", "overlay", "difference"}} (base64 PNGs, the same bytes as
                            the files of ``instructx2x edit`` for the same inputs)
  POST /api/jobs            the same form, answered at once with {"job": id}; the page polls
  POST /api/variations      the same form: the Figure-4 grid (severities x left/right/bilateral) of the
                            parsed finding, with the same seed
  GET  /api/jobs/<id>       status, queue position, progress (steps done/total), result when done
  GET  /api/jobs/<id>/download   zip: input, outputs, record.json

Safety of a local server: it binds 127.0.0.1 unless told otherwise; request bodies over
``--max-upload-mb`` and images over ``--max-pixels`` are refused before decoding; uploads are read
from the request body in memory, never from a path; edits run one at a time in one worker thread
(at most ``--queue`` waiting, then 503), so the page and the API stay responsive while one runs.
Errors are JSON ``{"error": "..."}`` with a 4xx status and one line of text.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import ipaddress
import json
import logging
import os
import queue
import secrets
import socket
import sys
import threading
import time
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from instructx2x.core.errors import InputError
from instructx2x.inference.rse import DEFAULTS

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("serve_page.html")
SEVERITIES = ("small", "moderate", "large")
SIDES = ("left", "right", "bilateral")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("serve", help="the editor as a local web page and HTTP API", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="diffusers pipeline directory (e.g. results/model/pipeline)")
    p.add_argument("--masks", default="results/masks/pseudo_masks.npz", help="pseudo masks (rule `masks`)")
    p.add_argument("--gallery", default="results/instructions/instructions.parquet",
                   help="demo inputs to start from: an instructions table (its test/holdout inputs) or a directory of PNGs")
    p.add_argument("--gallery-size", type=int, default=12)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (0: any free port; the URL is printed)")
    p.add_argument("--max-upload-mb", type=float, default=32.0, help="largest request body accepted")
    p.add_argument("--max-pixels", type=int, default=4096 * 4096, help="largest image accepted (checked before decoding)")
    p.add_argument("--queue", type=int, default=8, help="edits waiting at most (then 503)")
    p.add_argument("--threads", type=int, default=0, help="torch threads for the edits (0: torch's default)")
    p.add_argument("--no-laterality", action="store_true", help="do not restrict pseudo masks to the named side")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------------
# Jobs: one worker thread, a bounded queue
# ------------------------------------------------------------------------------------------------


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Job:
    id: str
    kind: str
    fn: object = field(repr=False)
    status: str = "queued"  # queued | running | done | failed
    done: int = 0
    total: int = 0
    result: dict | None = field(default=None, repr=False)
    archive: dict | None = field(default=None, repr=False)  # name -> bytes for the download
    error: str | None = None
    finished: threading.Event = field(default_factory=threading.Event, repr=False)
    started_at: float | None = None  # time.monotonic() when the worker took it
    ended_at: float | None = None  # time.monotonic() when it finished

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = int(done), int(total)


class JobQueue:
    """Edits run one at a time in submission order; finished jobs are kept (the last ``keep``)."""

    def __init__(self, max_pending: int = 8, keep: int = 16):
        self.max_pending, self.keep = int(max_pending), int(keep)
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.pending: queue.Queue[Job] = queue.Queue()
        self.lock = threading.Lock()
        self.worker = threading.Thread(target=self._work, name="instructx2x-edit-worker", daemon=True)
        self.worker.start()

    def submit(self, kind: str, fn, total: int = 0) -> Job:
        with self.lock:
            waiting = sum(j.status == "queued" for j in self.jobs.values())
            if waiting >= self.max_pending:
                raise HTTPError(503, f"{waiting} edits are waiting already; try again when one has finished")
            job = Job(id=secrets.token_hex(8), kind=kind, fn=fn, total=total)
            self.jobs[job.id] = job
            finished = [k for k, j in self.jobs.items() if j.finished.is_set()]
            for k in finished[: max(0, len(finished) - self.keep)]:
                del self.jobs[k]
        self.pending.put(job)
        return job

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise HTTPError(404, f"no job {job_id!r} (finished jobs are kept for the last {self.keep} edits)")
        return job

    def position(self, job: Job) -> int:
        """How many jobs run or wait before this one (0: it is running or done)."""
        if job.status != "queued":
            return 0
        ahead = 0
        for j in list(self.jobs.values()):
            if j is job:
                break
            ahead += j.status in ("queued", "running")
        return ahead

    def _work(self) -> None:
        while True:
            job = self.pending.get()
            job.started_at = time.monotonic()
            job.status = "running"
            try:
                job.result, job.archive = job.fn(job.progress)
                job.status = "done"
            except InputError as err:
                job.error, job.status = str(err), "failed"
            except Exception as err:  # noqa: BLE001 - a bug: logged with its traceback, reported in one line
                log.exception("edit %s failed", job.id)
                job.error, job.status = f"internal error ({type(err).__name__}: {err})", "failed"
            finally:
                job.ended_at = time.monotonic()
                job.finished.set()


# ------------------------------------------------------------------------------------------------
# The service: what the routes call
# ------------------------------------------------------------------------------------------------


@dataclass
class Limits:
    max_bytes: int = 32 * 2**20
    max_pixels: int = 4096 * 4096


def load_gallery(source, size: int = 12, max_pixels: int = 4096 * 4096) -> list[dict]:
    """Demo inputs to start from, read once at start-up: the test/holdout inputs of an
    instructions table (with their instructions), or the PNG/JPG files of a directory."""
    import pandas as pd

    from instructx2x.core.images import read_gray
    from instructx2x.inference.editor import png_bytes

    if not source:
        return []
    source = Path(source)
    entries = []
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm"))
        entries = [(p, "") for p in files]
    elif source.is_file():
        from instructx2x.core.paths import read_parquet

        df = read_parquet(source)  # image paths relative to the results directory come back absolute
        if "split" in df.columns:
            df = df[df["split"].isin(["test", "holdout"])]
        df = df.sort_values("pair_id", kind="stable") if "pair_id" in df.columns else df
        seen = set()
        for row in df.itertuples(index=False):
            p = Path(str(row.past_image))
            if not p.is_absolute() and not p.exists():
                p = source.parent / p
            if str(p) not in seen:
                seen.add(str(p))
                entries.append((p, str(getattr(row, "instruction", "") or "")))
    else:
        log.warning("gallery %s not found: the page starts with uploads only", source)
    gallery = []
    for path, instruction in entries:
        if len(gallery) >= size:
            break
        try:
            image = read_gray(path, max_pixels=max_pixels)
        except InputError as err:
            log.warning("gallery: skipped %s", err)
            continue
        gallery.append({"name": path.name, "instruction": instruction, "png": png_bytes(image),
                        "width": int(image.shape[1]), "height": int(image.shape[0])})
    return gallery


def named_bytes(data: bytes, name: str) -> io.BytesIO:
    """Uploaded bytes as a file object whose name (for messages and the DICOM check) is ``name``."""
    buf = io.BytesIO(data)
    buf.name = name
    return buf


class Service:
    """The editor behind the routes: decoding and checking uploads, queueing edits, results."""

    def __init__(self, editor, gallery=(), limits: Limits | None = None, max_pending: int = 8):
        self.editor = editor
        self.gallery = list(gallery)
        self.limits = limits or Limits()
        self.jobs = JobQueue(max_pending)

    # -- inputs --------------------------------------------------------------------------------

    def read_image(self, name: str, data: bytes) -> np.ndarray:
        """An uploaded image (PNG/JPG/DICOM) as the editor reads it, checked against the model's size factor."""
        from instructx2x.core.images import read_gray

        if not data:
            raise InputError(f"image upload {name}: empty file")
        image = read_gray(named_bytes(data, f"image upload {name}"), max_pixels=self.limits.max_pixels)
        self.editor.check_image(image, f"image upload {name}")
        return image

    def decode(self, fields: dict):
        """(image, settings, user mask, input PNG bytes) from the form fields, or an InputError."""
        from instructx2x.core.images import read_gray
        from instructx2x.inference.editor import EditSettings, png_bytes, user_mask_from_gray

        image_field = fields.get("image")
        if image_field is None:
            raise InputError("no 'image' file in the form (multipart field 'image')")
        name, data = image_field
        if not data:
            raise InputError(f"image upload {name}: empty file")
        raw = fields.get("settings")
        if raw is None:
            raise InputError("no 'settings' field in the form (JSON with at least 'instruction')")
        try:
            obj = json.loads(raw[1] if isinstance(raw, tuple) else raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(f"settings is not valid JSON ({err})") from None
        settings = EditSettings.from_json(obj)
        image = self.read_image(name, data)
        user_mask = None
        if fields.get("user_mask") is not None:
            mname, mdata = fields["user_mask"]
            mask = read_gray(named_bytes(mdata, f"user mask {mname}"), max_pixels=self.limits.max_pixels,
                             check_content=False)
            user_mask = user_mask_from_gray(mask, image.shape, f"user mask {mname}")
        if settings.rse and user_mask is None and self.editor.pseudo_masks is None:
            raise InputError("this server has no pseudo masks (--masks): draw a mask or turn RSE off")
        return image, settings, user_mask, png_bytes(image)

    # -- work ----------------------------------------------------------------------------------

    def edit_job(self, image, settings, user_mask, input_png):
        def fn(progress):
            result = self.editor.edit(image, settings, user_mask=user_mask, progress=progress)
            images = result.images()
            payload = {"record": result.record, "images": {k: base64.b64encode(v).decode() for k, v in images.items()}}
            archive = {"input.png": input_png, **{f"{k}.png": v for k, v in images.items()},
                       "record.json": json.dumps(result.record, indent=2).encode()}
            return payload, archive
        return fn

    def variations_job(self, image, settings, user_mask, input_png):
        from instructx2x.instructions.grammar import render_instruction
        from instructx2x.instructions.operation import Operation
        from instructx2x.masks import parse_operations

        try:
            ops = parse_operations(settings.instruction)
        except ValueError as err:
            raise InputError(f"variations need a parsed instruction ({err})") from None
        first = ops[0]
        verb = "remove" if first.get("op") == "remove" else "add"
        grid = [[render_instruction([Operation(op=verb, finding=first["finding"], location=side, severity=sev)])
                 for side in SIDES] for sev in SEVERITIES]

        def fn(progress):
            from dataclasses import replace

            n = len(SEVERITIES) * len(SIDES)
            cells, variants = [], []
            for k, text in enumerate(t for row in grid for t in row):
                def step(done, total, k=k):
                    progress(k * total + done, n * total)
                res = self.editor.edit(image, replace(settings, instruction=text), user_mask=user_mask, progress=step)
                cells.append(res.output.edited)
                variants.append({"instruction": text, "mask_source": res.record["mask_source"],
                                 "mask_detail": res.record["mask_detail"], "edited_fraction": res.record["edited_fraction"]})
            png = variations_grid(cells, [t for row in grid for t in row])
            record = {"model": {"path": str(self.editor.model_dir), "sha256": self.editor.model_sha256},
                      "instruction": settings.instruction, "settings": settings.as_dict(), "variants": variants,
                      "rows": list(SEVERITIES), "columns": list(SIDES)}
            payload = {"record": record, "images": {"grid": base64.b64encode(png).decode()}}
            return payload, {"input.png": input_png, "variations.png": png,
                             "record.json": json.dumps(record, indent=2).encode()}
        return fn


def variations_grid(cells: list[np.ndarray], labels: list[str], cols: int = len(SIDES)) -> bytes:
    """The edited images in a grid (rows: severity, columns: side), each labelled with its instruction."""
    from PIL import Image, ImageDraw

    from instructx2x.inference.editor import png_bytes

    h, w = cells[0].shape
    label_h = 14
    scale = max(1, 192 // max(h, w))
    ch, cw = h * scale + label_h, w * scale
    rows = (len(cells) + cols - 1) // cols
    canvas = Image.new("L", (cols * cw + (cols - 1) * 4, rows * ch + (rows - 1) * 4), 255)
    draw = ImageDraw.Draw(canvas)
    for i, (cell, label) in enumerate(zip(cells, labels)):
        x, y = (i % cols) * (cw + 4), (i // cols) * (ch + 4)
        canvas.paste(Image.fromarray(cell).resize((cw, h * scale), Image.NEAREST), (x, y + label_h))
        draw.text((x + 2, y + 1), label.replace("Add a ", "").replace("Remove the ", "- ")[: cw // 6], fill=0)
    return png_bytes(np.asarray(canvas))


# ------------------------------------------------------------------------------------------------
# HTTP
# ------------------------------------------------------------------------------------------------


def create_app(service: Service):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    page = PAGE.read_text()
    ed = service.editor

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)

    async def read_fields(request) -> dict:
        """The form, with the body read under the size limit first (never trusting Content-Length alone)."""
        limit = service.limits.max_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise HTTPError(413, f"upload is {int(declared):,} bytes; the limit is {limit:,} (--max-upload-mb)")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise HTTPError(413, f"upload exceeds {limit:,} bytes (--max-upload-mb)")
        if "multipart/form-data" not in request.headers.get("content-type", ""):
            raise HTTPError(400, "expected multipart/form-data with an 'image' file and a 'settings' JSON field")
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        form = await Request(request.scope, replay).form(max_files=2, max_fields=4, max_part_size=limit)
        fields = {}
        for key in ("image", "user_mask", "settings"):
            value = form.get(key)
            if value is None or value == "":
                continue
            if hasattr(value, "read"):
                data = await value.read()
                fname = os.path.basename(str(value.filename or key))[:80]  # for messages only
                if key == "settings":
                    fields[key] = data.decode("utf-8", "replace")
                elif data:
                    fields[key] = (fname, data)
            else:
                if key != "settings":
                    raise HTTPError(400, f"'{key}' must be a file upload")
                fields[key] = value
        await form.close()
        return fields

    async def submit(request, kind):
        fields = await read_fields(request)
        decoded = await asyncio.to_thread(service.decode, fields)
        fn = (service.variations_job if kind == "variations" else service.edit_job)(*decoded)
        steps = decoded[1].steps * (len(SEVERITIES) * len(SIDES) if kind == "variations" else 1)
        return service.jobs.submit(kind, fn, total=steps)

    def job_json(job: Job) -> dict:
        out = {"job": job.id, "kind": job.kind, "status": job.status, "position": service.jobs.position(job),
               "progress": {"done": job.done, "total": job.total},
               "started_at": job.started_at, "ended_at": job.ended_at}
        if job.status == "done":
            out["result"] = job.result
            out["download"] = f"/api/jobs/{job.id}/download"
        if job.error:
            out["error"] = job.error
        return out

    def handled(fn):
        async def wrapper(request):
            try:
                return await fn(request)
            except HTTPError as err:
                return error(err.status, str(err))
            except InputError as err:
                return error(400, str(err))
        return wrapper

    async def index(request):
        return HTMLResponse(page)

    async def info(request):
        return JSONResponse({
            "model": {"path": str(ed.model_dir), "sha256": ed.model_sha256, "size_factor": ed.size_factor},
            "pseudo_masks": bool(ed.pseudo_masks is not None),
            "defaults": {k: DEFAULTS[k] for k in ("seed", "steps", "tau", "t_rel", "image_guidance_scale", "guidance_scale")},
            "limits": {"max_bytes": service.limits.max_bytes, "max_pixels": service.limits.max_pixels,
                       "queue": service.jobs.max_pending},
            "gallery": [{"index": i, "name": g["name"], "instruction": g["instruction"], "width": g["width"],
                         "height": g["height"], "url": f"/api/gallery/{i}.png"} for i, g in enumerate(service.gallery)],
        })

    async def parse(request):
        from instructx2x.inference.editor import preview_operations

        text = request.query_params.get("instruction", "")[:500]
        return JSONResponse(preview_operations(text, ed.pseudo_masks, ed.region_settings))

    async def gallery(request):
        i = request.path_params["index"]
        if not 0 <= i < len(service.gallery):
            raise HTTPError(404, f"no gallery image {i}")
        return Response(service.gallery[i]["png"], media_type="image/png")

    async def decode(request):
        """The upload as the editor will read it (8-bit PNG for display), or the reason it cannot be used."""
        from instructx2x.inference.editor import png_bytes

        fields = await read_fields(request)
        if "image" not in fields:
            raise HTTPError(400, "no 'image' file in the form (multipart field 'image')")
        image = await asyncio.to_thread(service.read_image, *fields["image"])
        return JSONResponse({"png": base64.b64encode(png_bytes(image)).decode(), "width": int(image.shape[1]),
                             "height": int(image.shape[0])})

    async def api_edit(request):
        job = await submit(request, "edit")
        await asyncio.to_thread(job.finished.wait)
        if job.status != "done":
            return error(400 if not job.error.startswith("internal") else 500, job.error)
        return JSONResponse(job.result)

    async def api_jobs(request):
        return JSONResponse(job_json(await submit(request, "edit")), status_code=202)

    async def api_variations(request):
        return JSONResponse(job_json(await submit(request, "variations")), status_code=202)

    async def job_status(request):
        return JSONResponse(job_json(service.jobs.get(request.path_params["job"])))

    async def download(request):
        job = service.jobs.get(request.path_params["job"])
        if job.status != "done":
            raise HTTPError(409, f"job {job.id} is {job.status}; download when it is done")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in job.archive.items():
                zf.writestr(name, data)
        return Response(buf.getvalue(), media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="instructx2x_{job.kind}_{job.id}.zip"'})

    routes = [
        Route("/", handled(index)),
        Route("/api/info", handled(info)),
        Route("/api/parse", handled(parse)),
        Route("/api/gallery/{index:int}.png", handled(gallery)),
        Route("/api/decode", handled(decode), methods=["POST"]),
        Route("/api/edit", handled(api_edit), methods=["POST"]),
        Route("/api/jobs", handled(api_jobs), methods=["POST"]),
        Route("/api/variations", handled(api_variations), methods=["POST"]),
        Route("/api/jobs/{job:str}", handled(job_status)),
        Route("/api/jobs/{job:str}/download", handled(download)),
    ]
    return Starlette(routes=routes)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run(args) -> int:
    import uvicorn

    from instructx2x.inference.editor import Editor

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    masks = args.masks if args.masks and args.masks.lower() != "none" else None
    editor = Editor(args.model, pseudo_masks=masks, region_settings={"restrict_laterality": not args.no_laterality},
                    device=args.device)
    limits = Limits(max_bytes=int(args.max_upload_mb * 2**20), max_pixels=int(args.max_pixels))
    gallery = load_gallery(args.gallery, args.gallery_size, limits.max_pixels)
    service = Service(editor, gallery, limits, args.queue)
    app = create_app(service)
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(128)  # listening before the URL is printed: early clients wait in the backlog, never refused
    except OSError as err:
        raise InputError(f"cannot listen on {args.host}:{args.port} ({err.strerror or err}); try another --port") from None
    host, port = sock.getsockname()[:2]
    if not _is_loopback(args.host):
        print(f"warning: listening on {args.host}: anyone who can reach this machine can use the editor", file=sys.stderr)
    url_host = f"[{host}]" if ":" in host else host
    print(f"instructx2x serve: model {editor.model_dir} (sha256 {editor.model_sha256[:12]}), "
          f"{len(gallery)} gallery inputs; open http://{url_host}:{port}/", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
