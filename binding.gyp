{
  # The NFQUEUE addon: build/Release/nfq.node. Built by `npm run build:addon`
  # (host/setup/ensure.sh runs it after installing libnetfilter-queue-dev), not
  # by `npm ci`: package.json says "gypfile": false, so a machine without the
  # Debian package can still `npm ci` and run everything but the NFQUEUE path.
  "targets": [
    {
      "target_name": "nfq",
      "sources": ["host/native/nfq.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-g", "-std=gnu11", "-Wfatal-errors", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "libraries": ["-lnetfilter_queue", "-lnfnetlink"]
    }
  ]
}
