"""Socket servers (socketserver / http.server) served by daemon threads, started and stopped as one."""
from __future__ import annotations

import threading


class ServerThreads:
    """Servers bound by the caller, then each served in a daemon thread named `name` until stop()."""

    def __init__(self, name: str):
        self.name = name
        self.servers, self.threads = [], []

    def add(self, server):
        """Keep a bound server, so that stop() closes it even when binding a later one fails."""
        self.servers.append(server)
        return server

    def serve(self) -> None:
        for server in self.servers:
            thread = threading.Thread(target=server.serve_forever, name=self.name, daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        for server in self.servers:
            if self.threads:  # shutdown() waits for serve_forever, which never ran otherwise
                server.shutdown()
            server.server_close()
        for thread in self.threads:
            thread.join()
        self.servers, self.threads = [], []
