import { MainAreaWidget } from '@jupyterlab/apputils';
import { IFrame } from '@jupyterlab/ui-components';

import { loomIcon } from './icon';
import { IStudioView, studioUrl } from './live';

/**
 * The studio in a main-area tab: an iframe of its page, served through Jupyter on the
 * same origin. Bokeh's scripts need `allow-scripts`, and its websocket and the page's
 * own requests go to Jupyter's origin, hence `allow-same-origin`.
 */
export class StudioTab extends MainAreaWidget<IFrame> {
  constructor(view: IStudioView = {}) {
    super({
      content: new IFrame({
        sandbox: ['allow-scripts', 'allow-same-origin', 'allow-downloads'],
        referrerPolicy: 'same-origin'
      })
    });
    this.id = 'loom-studio';
    this.addClass('jp-LoomStudioTab');
    this.title.label = 'Loom Studio';
    this.title.icon = loomIcon;
    this.title.closable = true;
    this.setView(view);
  }

  /** The view the tab shows. */
  get view(): IStudioView {
    return { ...this._view };
  }

  /** Show `view`: the page loads again unless it already shows that view. */
  setView(view: IStudioView): void {
    this._view = { ...view };
    const url = new URL(studioUrl(view), window.location.href).href;
    if (this._location() !== url) {
      this.content.url = url;
    }
    const what = view.agent ? `agent ${view.agent}` : view.topic ? `topic ${view.topic}` : '';
    this.title.caption = what ? `Loom Studio: ${what}` : 'Loom Studio';
  }

  /** Where the frame is now (a link in the studio may have taken it elsewhere). */
  private _location(): string {
    const frame = this.content.node.querySelector('iframe');
    try {
      return frame?.contentWindow?.location.href ?? '';
    } catch {
      return ''; // not the same origin (any more): load the view
    }
  }

  private _view: IStudioView = {};
}
