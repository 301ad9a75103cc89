# hyperbox-runc build. `make` builds TypeScript, the N-API addon and the native launcher.
PREFIX      ?= /usr/local
NODE        ?= $(shell command -v node)
NODEDIR     ?= $(shell $(NODE) -p 'require("path").resolve(process.execPath, "../..")')
VERSION     := $(shell $(NODE) -p 'require("./package.json").version')
CC          ?= cc
CXX         ?= g++
CLANG       ?= clang
BPFTOOL     ?= $(shell command -v bpftool || echo /usr/sbin/bpftool)
CFLAGS      ?= -O2 -Wall -Wextra -Wno-format-truncation -Werror=implicit-function-declaration
LIBDIR       = $(PREFIX)/lib/hyperbox-runc
TAP          = node_modules/.bin/tap --disable-coverage --reporter=tap --timeout=600 --jobs=1

.PHONY: all ts addon launcher install demo test test-unit test-integration bench clean deps

all: ts addon launcher

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: node_modules/.package-lock.json

ts: deps
	node_modules/.bin/tsc -p tsconfig.json
	node dist/config-schema/generate.js dist/schema

build:
	mkdir -p build

LAUNCHER_SRC = addon/src/launcher.c addon/src/runc_lookup.c
launcher: build/hyperbox-runc
# Static: no dynamic loader on the pass-through path saves ~0.5 ms a call (runc's `state` takes ~4).
build/hyperbox-runc: $(LAUNCHER_SRC) addon/src/runc_lookup.h | build
	$(CC) $(CFLAGS) -static -DHYPERBOX_VERSION='"$(VERSION)"' -DHYPERBOX_NODE='"$(NODE)"' -o $@ $(LAUNCHER_SRC)

addon: build/hyperbox.node
build/runc_lookup.o: addon/src/runc_lookup.c addon/src/runc_lookup.h | build
	$(CC) $(CFLAGS) -fPIC -c -o $@ $<
# The recorder's BPF object is embedded in the addon through a bpftool skeleton:
# nothing to find at run time. CO-RE against the kernel's BTF, so no vmlinux.h.
# (The multiarch dir is where <asm/types.h> lives; -target bpf does not look there.
# -mcpu=v3: the exec ring needs the value a fetch-and-add returns.)
BPF_CFLAGS = -O2 -g -Wall -target bpf -mcpu=v3 -D__TARGET_ARCH_x86 -I/usr/include/$(shell $(CC) -print-multiarch)
build/recorder.bpf.o: addon/bpf/recorder.bpf.c addon/bpf/recorder.h | build
	$(CLANG) $(BPF_CFLAGS) -c -o $@ $<
build/recorder.skel.h: build/recorder.bpf.o
	$(BPFTOOL) gen skeleton $< name recorder > $@.tmp && mv $@.tmp $@
build/hyperbox.node: addon/src/addon.cc addon/src/mount.cc addon/src/psi.cc build/runc_lookup.o build/recorder.skel.h addon/bpf/recorder.h | deps build
	$(CXX) -O2 -Wall -shared -fPIC -std=c++17 -DNAPI_VERSION=8 -DNAPI_DISABLE_CPP_EXCEPTIONS \
	  -I$(NODEDIR)/include/node -Inode_modules/node-addon-api -Ibuild -Iaddon/bpf -o $@ addon/src/addon.cc addon/src/mount.cc addon/src/psi.cc build/runc_lookup.o \
	  -lbpf -lseccomp

install: all
	install -d $(PREFIX)/bin $(LIBDIR)/build $(LIBDIR)/dist
	cp -r dist/src dist/config-schema $(LIBDIR)/dist/
	cp package.json package-lock.json $(LIBDIR)/
	cd $(LIBDIR) && npm ci --omit=dev --no-audit --no-fund --ignore-scripts >/dev/null
	install -m 0755 build/hyperbox.node $(LIBDIR)/build/hyperbox.node
	install -m 0755 build/hyperbox-runc $(PREFIX)/bin/hyperbox-runc

test-unit: all
	$(TAP) 'dist/test/{cli,oci,features,native,store}/**/*.test.js'

test-integration: all
	HYPERBOX_TEST_RUNTIME=$(CURDIR)/build/hyperbox-runc $(TAP) 'dist/test/integration/**/*.test.js'

test: all
	bash test/run-all.sh

demo:
	bash fixtures/demo.sh

bench: all
	env -u NODE_EXTRA_CA_CERTS node dist/test/bench/foundation.js --readme
	env -u NODE_EXTRA_CA_CERTS node dist/test/bench/seccomp.js --readme
	env -u NODE_EXTRA_CA_CERTS node dist/test/bench/trace.js --readme
	env -u NODE_EXTRA_CA_CERTS node dist/test/bench/erofs.js --readme
	env -u NODE_EXTRA_CA_CERTS node dist/test/bench/tune.js --readme

clean:
	rm -rf dist build
