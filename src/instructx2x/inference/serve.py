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
import logging
import os
import socket
import sys
import zipfile
from pathlib import Path

from instructx2x.core.errors import InputError
from instructx2x.inference.rse import DEFAULTS
from instructx2x.inference.serve_jobs import HTTPError, Job
from instructx2x.inference.serve_service import SEVERITIES, SIDES, Limits, Service, load_gallery

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("serve_page.html")


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
            "defaults": {k: DEFAULTS[k] for k in ("seed", "steps", "tau", "t_rel", "image_guidance_scale", "guidance_scale",
                                                  "decode")},
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


