# How the shipped binary is linked; debian/rules and the Makefile's bench both include this file,
# so the figures are those of the binary in the .deb.
#   --static-swift-stdlib     the Swift runtime inside: no toolchain on the target
#   lld, -z now               the toolchain's own linker; every symbol bound at start (hardening)
#   pack-relative-relocs      DT_RELR: the 56,000 relative relocations of a PIE take 11 KB instead
#                             of 1.3 MB, and fewer pages of relocated data are written at start
#   function-sections         each Swift and C function in a section of its own, so that the
#                             ordering below can move it (without it, only whole objects move, and
#                             the ordered functions lay spread over 7 of the 13 MB of .text)
#   symbol-ordering-file      the functions a start and a request run, first and together in .text
#                             (packaging/symbol-order.py writes the list)
#   openclaw-gateway.ld       Swift's functions without a symbol, which no list can name, in one
#                             block beside them; with function-sections, idle RSS 12,982 -> 10,792 KiB
#   version-script            export main only (packaging/openclaw-gateway.exports): 417 dynamic
#                             symbols instead of 13,921; READY about 0.3 ms sooner, 0.5 MiB less RSS
# Include with RELEASE_TOP set to the source tree's root.
RELEASE_ORDER_FILE = $(RELEASE_TOP)/packaging/openclaw-gateway.order
RELEASE_EXPORTS_FILE = $(RELEASE_TOP)/packaging/openclaw-gateway.exports
RELEASE_LINKER_SCRIPT = $(RELEASE_TOP)/packaging/openclaw-gateway.ld
# A changed order, export list or script does not change the link command: relink by hand.
RELEASE_LINK_INPUTS = $(RELEASE_ORDER_FILE) $(RELEASE_EXPORTS_FILE) $(RELEASE_LINKER_SCRIPT)
RELEASE_FLAGS = -c release --static-swift-stdlib -Xswiftc -use-ld=lld \
	-Xswiftc -Xfrontend -Xswiftc -function-sections -Xcc -ffunction-sections \
	-Xlinker -z -Xlinker now -Xlinker -z -Xlinker pack-relative-relocs \
	-Xlinker --symbol-ordering-file=$(RELEASE_ORDER_FILE) -Xlinker --no-warn-symbol-ordering \
	-Xlinker --version-script=$(RELEASE_EXPORTS_FILE) -Xlinker -T -Xlinker $(RELEASE_LINKER_SCRIPT)
