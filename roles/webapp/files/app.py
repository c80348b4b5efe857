"""The webapp stack's application: notes kept in PostgreSQL, visits counted in Redis.

Standard library http.server plus psycopg2 and redis. GET / shows the page, POST / adds a note
(form field `note`), GET /api answers the same as JSON, GET /health checks both stores.
"""
import contextlib
import html
import json
import os
import socket
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import redis

DATABASE = dict(host=os.environ["DB_HOST"], port=int(os.environ["DB_PORT"]), dbname=os.environ["DB_NAME"],
                user=os.environ["DB_USER"], password=os.environ["DB_PASSWORD"], connect_timeout=5)
CACHE = redis.Redis(host=os.environ["REDIS_HOST"], port=int(os.environ["REDIS_PORT"]), socket_timeout=5)
REPLICA, VERSION = socket.gethostname(), os.environ.get("APP_VERSION", "")


def query(sql, args=()):
    # closing() ends the connection; `with conn` commits (or rolls back) the transaction.
    with contextlib.closing(psycopg2.connect(**DATABASE)) as conn:
        with conn, conn.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall() if cursor.description else []


def state(count_visit=True):
    visits = CACHE.incr("visits") if count_visit else int(CACHE.get("visits") or 0)
    notes = [text for (text,) in query("SELECT text FROM notes ORDER BY id")]
    return {"replica": REPLICA, "version": VERSION, "visits": visits, "notes": notes}


def page(data):
    items = "".join("<li>%s</li>" % html.escape(text) for text in data["notes"])
    return ("<!doctype html><title>jetpack webapp</title><h1>Notes</h1><ul>%s</ul>"
            "<form method=post><input name=note><button>Add</button></form>"
            "<p>Visits: %d. Served by %s, version %s.</p>" % (
                items, data["visits"], html.escape(REPLICA), html.escape(VERSION)))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            query("SELECT 1")
            CACHE.ping()
            return self.answer(200, "text/plain", "ok\n")
        if self.path == "/api":
            return self.answer(200, "application/json", json.dumps(state()))
        if self.path == "/":
            return self.answer(200, "text/html; charset=utf-8", page(state()))
        self.answer(404, "text/plain", "not found\n")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        note = (form.get("note") or [""])[0].strip()[:500]
        if note:
            query("INSERT INTO notes (text) VALUES (%s)", (note,))
        self.send_response(303)
        self.send_header("Location", "/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def answer(self, status, kind, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    for attempt in range(60):  # PostgreSQL may still be starting
        try:
            query("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, text text NOT NULL)")
            break
        except psycopg2.OperationalError:
            if attempt == 59:
                raise
            time.sleep(1)
    ThreadingHTTPServer(("", int(os.environ["APP_PORT"])), Handler).serve_forever()


if __name__ == "__main__":
    main()
