"""Go's text/tabwriter with spaces, as regclient's pretty printers use it.

`align(text, padding=1)` is `tabwriter.NewWriter(buf, 0, 0, padding, ' ', 0)` followed by
Flush: text is split into lines and each line into tab-terminated cells (the text after
a line's last tab is not a cell). A column block is a run of consecutive lines that have
a cell in that column; every cell of a block is padded to the block's widest cell plus
`padding`. Widths count characters, as Go counts runes.

    align("Name:\\tx\\nMediaType:\\ty\\n")  ->  "Name:      x\\nMediaType: y\\n"
"""

from __future__ import annotations


def align(text: str, padding: int = 1) -> str:
    lines = [line.split("\t") for line in text.split("\n")]
    out: list[str] = []
    _format(lines, 0, len(lines), [], padding, out)
    return "\n".join(out)


def _format(lines: list[list[str]], line0: int, line1: int, widths: list[int],
            padding: int, out: list[str]) -> None:
    """Go's Writer.format: find the column blocks of column len(widths), recursively."""
    column = len(widths)
    this = line0
    while this < line1:
        if column >= len(lines[this]) - 1:
            this += 1
            continue
        _write(lines, line0, this, widths, out)
        line0 = this
        width = 0
        while this < line1 and column < len(lines[this]) - 1:
            width = max(width, len(lines[this][column]) + padding)
            this += 1
        _format(lines, line0, this, [*widths, width], padding, out)
        line0 = this
    _write(lines, line0, line1, widths, out)


def _write(lines: list[list[str]], line0: int, line1: int, widths: list[int],
           out: list[str]) -> None:
    for cells in lines[line0:line1]:
        parts = []
        for j, cell in enumerate(cells):
            parts.append(cell.ljust(widths[j]) if j < len(widths) else cell)
        out.append("".join(parts))
