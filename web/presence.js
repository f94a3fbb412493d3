// Who is here: the header's "3 here" button and its panel of names, asked on every (re)connect with
// {"action": "presence"} and kept up to date by the {"joined"} and {"left"} frames that follow, each also shown
// in the log as a line of its own. Names are text, never markup.
//
// The server damps joins and leaves (about one a second per room): when some were merged away, a frame says
// `recount`, and the page asks again once things have been calm for RECOUNT_MS, so its count and names settle.

const RECOUNT_MS = 2000;

export class Presence {
  /**
   * @param {object} options
   * @param {(id: string) => HTMLElement} options.$ the page's elements by id
   * @param {string | null} options.myName this tab's name (marked in the list)
   * @param {import('./log.js').MessageLog} options.log where joins and leaves are told
   * @param {() => void} options.ask asks the server who is here
   */
  constructor({ $, myName, log, ask }) {
    this.$ = $;
    this.myName = myName;
    this.log = log;
    this.ask = ask;
    this.recountTimer = 0;
    this.count = 0;
    this.names = [];
    this.button = $('presence-button');
    this.panel = $('presence-panel');
    this.button.addEventListener('click', () => this.setPanel(this.panel.hidden));
    document.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && !this.panel.hidden) {
        this.setPanel(false);
        this.button.focus();
      }
    });
    document.addEventListener('click', (event) => {
      if (!this.panel.hidden && !event.target.closest('.presence')) this.setPanel(false);
    });
  }

  /** Handles a presence frame; false when the frame is not one. */
  onFrame(frame) {
    if (frame.presence && typeof frame.presence === 'object' && Number.isSafeInteger(frame.presence.count)) {
      this.count = frame.presence.count;
      this.names = Array.isArray(frame.presence.members)
        ? frame.presence.members.filter((n) => typeof n === 'string')
        : [];
      this.render();
      return true;
    }
    const joined = 'joined' in frame && Number.isSafeInteger(frame.count);
    const left = 'left' in frame && Number.isSafeInteger(frame.count);
    if (!joined && !left) return false;
    const name = joined ? frame.joined : frame.left;
    const named = typeof name === 'string' && name !== '' ? name : null;
    this.count = frame.count;
    if (named && joined) this.names = [...this.names, named].sort();
    if (named && left) {
      const i = this.names.indexOf(named);
      if (i >= 0) this.names = this.names.toSpliced(i, 1);
    }
    this.render();
    this.line(named, joined ? 'joined' : 'left');
    if (frame.recount === true) {
      clearTimeout(this.recountTimer);
      this.recountTimer = setTimeout(() => this.ask(), RECOUNT_MS);
    }
    return true;
  }

  render() {
    const { $ } = this;
    this.button.hidden = false;
    $('presence-count').textContent = String(this.count);
    this.button.title = this.count === 1 ? '1 person here' : `${this.count} people here`;
    $('presence-list').replaceChildren(...this.names.map((name) => {
      const li = document.createElement('li');
      li.textContent = name;
      if (name === this.myName) li.classList.add('me');
      return li;
    }));
    const anonymous = Math.max(0, this.count - this.names.length);
    $('presence-anonymous').hidden = anonymous === 0;
    $('presence-anonymous').textContent = anonymous === 1 ? 'and 1 anonymous person' : `and ${anonymous} anonymous people`;
  }

  setPanel(open) {
    this.panel.hidden = !open;
    this.button.setAttribute('aria-expanded', String(open));
  }

  /** A join or leave line: the name as text in its own element, never markup. */
  line(name, verb) {
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = name ?? 'Someone (anonymous)';
    this.log.append('system', [who, ` ${verb}`]).classList.add('presence-line');
  }
}
