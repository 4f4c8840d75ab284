{
  # The NFQUEUE addon: build/Release/nfq.node. Built by `npm run build:addon`
  # (host/setup/ensure.sh runs it after installing libnetfilter-queue-dev), not
  # by `npm ci`: package.json says "gypfile": false, so a machine without the
  # Debian package can still `npm ci` and run everything but the NFQUEUE path.
  #
  # The wasmtime engine addon: build/Release/wasmtime.node, only when the
  # wasmtime C API library is in .wasmtime/ (ensure.sh installs it there with
  # pip; the wheel's library has no SONAME: -l:_libwasmtime.so, found at run
  # time through an rpath relative to the addon).
  #
  # The conntrack addon: build/Release/ct.node (ctnetlink through
  # libnetfilter_conntrack, for flow offload), built with nfq.node after
  # ensure.sh installed libnetfilter-conntrack-dev.
  "variables": {
    "wasmtime_arch%": "<!(node -p \"process.arch === 'arm64' ? 'linux-aarch64' : 'linux-x86_64'\")",
    "has_wasmtime%": "<!(node -p \"+require('fs').existsSync('.wasmtime/wasmtime/' + (process.arch === 'arm64' ? 'linux-aarch64' : 'linux-x86_64') + '/_libwasmtime.so')\")"
  },
  "targets": [
    {
      "target_name": "nfq",
      "sources": ["host/native/nfq.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-g", "-std=gnu11", "-Wfatal-errors", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "libraries": ["-lnetfilter_queue", "-lnfnetlink"]
    },
    {
      "target_name": "ct",
      "sources": ["host/native/ct.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-g", "-std=gnu11", "-Wfatal-errors", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "libraries": ["-lnetfilter_conntrack", "-lnfnetlink"]
    }
  ],
  "conditions": [
    ["has_wasmtime==1", {
      "targets": [
        {
          "target_name": "wasmtime",
          "sources": ["host/native/wasmtime.c"],
          "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
          "cflags": ["-g", "-std=gnu11", "-Wfatal-errors", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
          "libraries": [
            "-L<(module_root_dir)/.wasmtime/wasmtime/<(wasmtime_arch)",
            "-l:_libwasmtime.so",
            "-Wl,-rpath,'$$ORIGIN/../../.wasmtime/wasmtime/<(wasmtime_arch)'"
          ]
        }
      ]
    }]
  ]
}
