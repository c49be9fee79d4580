//===- ElfCheck.cpp - a shared library whose headers tell the truth --------===//

#include "moe/Support/ElfCheck.h"

#include <elf.h>

#include <cerrno>
#include <cstring>
#include <fstream>

using namespace support;

static bool fail(std::string &error, const std::string &what) {
  error = what;
  return false;
}

/// `offset + count * size <= limit` without wrapping.
static bool within(uint64_t offset, uint64_t count, uint64_t size, uint64_t limit) {
  if (size != 0 && count > limit / size)
    return false;
  return offset <= limit && count * size <= limit - offset;
}

bool support::checkElfHeaders(std::string_view head, uint64_t fileSize, std::string &error) {
  Elf64_Ehdr eh;
  if (head.size() < sizeof(eh) || std::memcmp(head.data(), ELFMAG, SELFMAG) != 0)
    return fail(error, "not an ELF shared library");
  std::memcpy(&eh, head.data(), sizeof(eh));
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB)
    return fail(error, "not a 64-bit little-endian ELF file");
  if (eh.e_type != ET_DYN)
    return fail(error, "not a shared library (ELF type " + std::to_string(eh.e_type) + ")");
#if defined(__x86_64__)
  if (eh.e_machine != EM_X86_64)
    return fail(error, "built for another machine (ELF machine " + std::to_string(eh.e_machine) + ")");
#elif defined(__aarch64__)
  if (eh.e_machine != EM_AARCH64)
    return fail(error, "built for another machine (ELF machine " + std::to_string(eh.e_machine) + ")");
#endif
  if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0)
    return fail(error, "corrupted ELF header (program headers)");
  if (!within(eh.e_phoff, eh.e_phnum, sizeof(Elf64_Phdr), head.size()) ||
      !within(eh.e_phoff, eh.e_phnum, sizeof(Elf64_Phdr), fileSize))
    return fail(error, "truncated or corrupted (program headers past the end of the file)");
  if (eh.e_shnum != 0 && (eh.e_shentsize != sizeof(Elf64_Shdr) ||
                          !within(eh.e_shoff, eh.e_shnum, sizeof(Elf64_Shdr), fileSize)))
    return fail(error, "truncated or corrupted (section headers past the end of the file)");
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, head.data() + eh.e_phoff + uint64_t(i) * sizeof(Elf64_Phdr), sizeof(ph));
    if (ph.p_type != PT_LOAD && ph.p_type != PT_DYNAMIC)
      continue;
    if (!within(ph.p_offset, 1, ph.p_filesz, fileSize))
      return fail(error, "truncated or corrupted (segment " + std::to_string(i) + " ends at byte " +
                             std::to_string(ph.p_offset + ph.p_filesz) + " of a " + std::to_string(fileSize) +
                             "-byte file)");
  }
  return true;
}

bool support::checkElfFile(const std::string &path, std::string &error) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in)
    return fail(error, std::string("cannot open: ") + std::strerror(errno));
  uint64_t size = uint64_t(in.tellg());
  // Program headers sit near the start; 64 KiB holds any real table.
  std::string head(size < 65536 ? size : 65536, '\0');
  in.seekg(0);
  if (!in.read(head.data(), std::streamsize(head.size())))
    return fail(error, "cannot read");
  return checkElfHeaders(head, size, error);
}
