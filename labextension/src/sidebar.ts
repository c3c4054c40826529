import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { loomIcon } from './icon';
import { ILiveAgent, ILiveSummary, ILiveTopic, IStudioView, StudioError } from './live';

/** Milliseconds between two looks at the studio while the panel is visible. */
export const REFRESH_MS = 2000;

export const NO_BUS = 'no bus runs for this project: start your agents or `loom run`';

interface IRow {
  key: string;
  label: string;
  detail: string;
  rate: number;
  status?: string;
  title: string;
}

/**
 * The left sidebar: the project's live agents (status, events/s) and topics (rate),
 * read from the studio every {@link REFRESH_MS} ms while the panel is shown (a hidden
 * panel asks nothing, so Lab alone never starts the studio). A click on an agent or a
 * topic opens the studio tab on its view.
 */
export class LoomSidebar extends Widget {
  constructor(
    private readonly _fetch: () => Promise<ILiveSummary>,
    private readonly _open: (view: IStudioView) => void
  ) {
    super();
    this.id = 'loom-sidebar';
    this.addClass('jp-LoomSidebar');
    this.title.icon = loomIcon;
    this.title.caption = 'Loom: live agents and topics';

    const header = this._element('header', 'jp-LoomSidebar-header', this.node);
    this._element('h2', 'jp-LoomSidebar-title', header).textContent = 'Loom';
    const open = this._element('button', 'jp-LoomSidebar-open jp-mod-styled', header);
    open.textContent = 'Open studio';
    open.title = 'Open the Loom studio (dashboard, traces, topics, editor, builder, history) in a tab';
    open.addEventListener('click', () => this._open({}));

    this._status = this._element('p', 'jp-LoomSidebar-status', this.node);
    this._status.textContent = 'starting the studio…';
    this._agents = this._section('Agents', 'agents');
    this._topics = this._section('Topics', 'topics');
  }

  /** Read the studio now and show what it says. */
  async refresh(): Promise<void> {
    try {
      this._show(await this._fetch());
    } catch (error) {
      const message = error instanceof StudioError ? error.message : String(error);
      this._setStatus(message, 'error');
    }
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._start();
  }

  protected onBeforeHide(msg: Message): void {
    this._stop();
    super.onBeforeHide(msg);
  }

  dispose(): void {
    this._stop();
    super.dispose();
  }

  /** Look now, then again {@link REFRESH_MS} after each answer (never two at once). */
  private _start(): void {
    this._stop();
    const run = this._run;
    const look = async (): Promise<void> => {
      await this.refresh();
      if (run === this._run) {
        this._timer = window.setTimeout(() => void look(), REFRESH_MS);
      }
    };
    void look();
  }

  /** No more looks: a look in flight schedules no other. */
  private _stop(): void {
    this._run += 1;
    if (this._timer !== undefined) {
      window.clearTimeout(this._timer);
      this._timer = undefined;
    }
  }

  private _show(summary: ILiveSummary): void {
    if (summary.bus === null) {
      this._setStatus("connecting to the project's bus…", 'waiting');
    } else if (summary.agents.length === 0 && summary.bus.embedded) {
      this._setStatus(NO_BUS, 'waiting');
    } else if (summary.agents.length === 0) {
      this._setStatus(`no agent on the bus at ${summary.bus.address} yet`, 'waiting');
    } else {
      const rate = formatRate(summary.events_per_s);
      this._setStatus(`${rate} events/s\non the bus at ${summary.bus.address}`, 'live');
    }
    this._fill(this._agents, summary.agents.map(agentRow), row => ({ agent: row.key }));
    this._fill(this._topics, summary.topics.map(topicRow), row => ({ topic: row.key }));
  }

  private _setStatus(text: string, state: 'error' | 'waiting' | 'live'): void {
    this._status.textContent = text;
    this._status.dataset.state = state;
  }

  /** Update a list in place, one button per row, in the summary's order. */
  private _fill(list: HTMLElement, rows: IRow[], view: (row: IRow) => IStudioView): void {
    const old = new Map<string, HTMLElement>();
    for (const item of Array.from(list.children) as HTMLElement[]) {
      old.set(item.dataset.key ?? '', item);
    }
    rows.forEach((row, index) => {
      let item = old.get(row.key);
      old.delete(row.key);
      if (item === undefined) {
        item = this._item(row, view(row));
      }
      item.title = row.title;
      item.dataset.status = row.status ?? '';
      item.querySelector('.jp-LoomSidebar-detail')!.textContent = row.detail;
      item.querySelector('.jp-LoomSidebar-rate')!.textContent = `${formatRate(row.rate)}/s`;
      if (list.children[index] !== item) {
        list.insertBefore(item, list.children[index] ?? null);
      }
    });
    old.forEach(item => item.remove());
    list.parentElement!.dataset.empty = rows.length === 0 ? 'true' : 'false';
  }

  private _item(row: IRow, view: IStudioView): HTMLElement {
    const item = document.createElement('li');
    item.dataset.key = row.key;
    const button = this._element('button', 'jp-LoomSidebar-item', item);
    this._element('span', 'jp-LoomSidebar-dot', button);
    this._element('span', 'jp-LoomSidebar-label', button).textContent = row.label;
    this._element('span', 'jp-LoomSidebar-detail', button);
    this._element('span', 'jp-LoomSidebar-rate', button);
    button.addEventListener('click', () => this._open(view));
    return item;
  }

  private _section(title: string, name: string): HTMLElement {
    const section = this._element('section', `jp-LoomSidebar-section`, this.node);
    section.dataset.section = name;
    this._element('h3', 'jp-LoomSidebar-heading', section).textContent = title;
    const empty = this._element('p', 'jp-LoomSidebar-empty', section);
    empty.textContent = `no ${name} yet`;
    return this._element('ul', 'jp-LoomSidebar-list', section);
  }

  private _element<K extends keyof HTMLElementTagNameMap>(
    tag: K,
    className: string,
    parent: HTMLElement
  ): HTMLElementTagNameMap[K] {
    const element = document.createElement(tag);
    element.className = className;
    parent.appendChild(element);
    return element;
  }

  private _status: HTMLElement;
  private _agents: HTMLElement;
  private _topics: HTMLElement;
  private _timer: number | undefined = undefined;
  private _run = 0;
}

function agentRow(agent: ILiveAgent): IRow {
  const error = agent.last_error ? `; last error: ${agent.last_error}` : '';
  return {
    key: agent.id,
    label: agent.id,
    detail: agent.status,
    rate: agent.rate,
    status: agent.status,
    title:
      `${agent.id}: ${agent.status}, publishes ${formatRate(agent.rate)} events/s, ` +
      `handled ${agent.handled}, ${agent.errors} errors${error}. ` +
      'Click: its events in the studio.'
  };
}

function topicRow(topic: ILiveTopic): IRow {
  return {
    key: topic.pattern,
    label: topic.pattern,
    detail: '',
    rate: topic.rate,
    title: `${topic.pattern}: ${formatRate(topic.rate)} events/s. Click: its events in the studio.`
  };
}

export function formatRate(rate: number): string {
  return rate < 100 ? rate.toFixed(1) : Math.round(rate).toLocaleString('en');
}
